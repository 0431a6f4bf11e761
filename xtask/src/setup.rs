//! `cargo xtask setup` (to be written).
use anyhow::Result;
pub fn run() -> Result<()> {
    Ok(())
}
