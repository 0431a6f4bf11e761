//! `cargo xtask demo` (to be written).
use anyhow::Result;
#[derive(clap::Args)]
pub struct DemoArgs {}
pub fn run(_args: DemoArgs) -> Result<()> {
    Ok(())
}
