//! Vat programs a newcomer reads and runs. The programs themselves are this
//! package's examples (`cargo run -p examples --example first_vat`); the
//! library is empty.
