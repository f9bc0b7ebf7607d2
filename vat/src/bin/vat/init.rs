//! `vat init` and `vat id`: a vat's identity, made once and read after.

use std::path::PathBuf;

use vat::net::Identity;

use crate::data::DataDir;
use crate::error::CliError;

/// `vat init`: makes the identity in `dir` (the folder too, mode 0700) or
/// keeps the one already there, makes a folder that existed owner-only,
/// and prints the vat id.
pub fn init(dir: PathBuf) -> Result<(), CliError> {
    let key = dir.join(Identity::KEY_FILE);
    let existed = key.exists();
    let identity = Identity::load_or_create(&dir)?;
    let data = DataDir::new(dir);
    if let Some(was) = data.make_private()? {
        println!(
            "made {} owner-only (mode 0700; it was {was:04o})",
            data.path().display()
        );
    }
    if existed {
        println!("{} already existed: kept it", key.display());
    } else {
        println!("made a new vat identity: {}", key.display());
    }
    println!("vat id: {}", DataDir::vat_id(&identity));
    Ok(())
}

/// `vat id`: prints the vat id of the identity in `dir`; never makes one.
pub fn id(dir: PathBuf) -> Result<(), CliError> {
    let identity = DataDir::new(dir).identity()?;
    println!("{}", DataDir::vat_id(&identity));
    Ok(())
}
