//! The token table `vat tokens list` prints, whether its rows come from the
//! store on disk or from a running vat's admin capability.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use sturdyrefs::{SwissHash, TokenRecord};

/// How many hex digits of a token's hash the table shows: enough to name
/// one token among billions, short enough to type.
pub const SHORT_HASH_DIGITS: usize = 16;

/// Whether a token still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// It restores its object.
    Live,
    /// It was revoked, for good.
    Revoked,
    /// Its lifetime is over.
    Expired,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Live => "live",
            State::Revoked => "revoked",
            State::Expired => "expired",
        }
    }
}

/// One token, as listed: no secret, only its hash.
#[derive(Debug, Clone)]
pub struct Row {
    /// The hash of the token's swiss number.
    pub hash: SwissHash,
    /// The object it reaches, `kind#id`.
    pub object: String,
    /// When it was minted, in seconds since 1970.
    pub created: u64,
    /// When it stops working, in seconds since 1970.
    pub expires: Option<u64>,
    /// The only vat that may present it, as text.
    pub bound_to: Option<String>,
    /// Whether it still works.
    pub state: State,
}

impl Row {
    /// The row of a record read from the store.
    pub fn from_record(record: &TokenRecord, now: SystemTime) -> Row {
        let state = if record.revoked {
            State::Revoked
        } else if record.is_expired_at(now) {
            State::Expired
        } else {
            State::Live
        };
        Row {
            hash: record.swiss_hash,
            object: record.object.to_string(),
            created: seconds(record.created_at),
            expires: record.expires_at.map(seconds),
            bound_to: record.bound_to.map(|v| v.to_string()),
            state,
        }
    }

    /// The hash in full, as hex.
    pub fn hex(&self) -> String {
        self.hash.to_string()
    }

    /// The first [`SHORT_HASH_DIGITS`] hex digits of the hash.
    pub fn short_hash(&self) -> String {
        self.hex()[..SHORT_HASH_DIGITS].to_owned()
    }
}

/// Seconds since 1970 (0 for earlier times, which the store refuses anyway).
pub fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The table: a header, then one line per row, columns aligned.
pub fn render(rows: &[Row]) -> String {
    let header = ["HASH", "OBJECT", "CREATED", "EXPIRES", "BOUND TO", "STATE"];
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.short_hash(),
                row.object.clone(),
                utc(row.created),
                row.expires.map_or_else(|| "never".to_owned(), utc),
                row.bound_to.clone().unwrap_or_else(|| "anyone".to_owned()),
                row.state.as_str().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut put = |cells: &[&str]| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    put(&header);
    for line in &lines {
        put(&line.each_ref().map(String::as_str));
    }
    out
}

/// `secs` seconds after 1970 as an RFC 3339 UTC time, to the second.
pub fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The Gregorian date `days` days after 1970-01-01. Counts in 400-year
/// eras starting on 1 March, where leap days fall at the end of a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // 719_468 days from 0000-03-01 to 1970-01-01.
    let since_0000 = days + 719_468;
    let era = since_0000 / 146_097;
    let day_of_era = since_0000 % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(utc(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn columns_line_up() {
        let row = Row {
            hash: SwissHash::from_bytes([0xab; 32]),
            object: "counter#1".to_owned(),
            created: 0,
            expires: None,
            bound_to: None,
            state: State::Live,
        };
        let table = render(&[row]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("abababababababab  counter#1  1970-01-01T00:00:00Z"));
        assert_eq!(lines[0].find("OBJECT"), lines[1].find("counter#1"));
        assert!(lines[1].ends_with("anyone    live"), "{table}");
    }
}
