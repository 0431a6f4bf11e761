//! `cargo xtask test` (to be written).
use anyhow::Result;
#[derive(clap::Args)]
pub struct TestArgs {}
pub fn run(_args: TestArgs) -> Result<()> {
    Ok(())
}
