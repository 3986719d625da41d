//! space.yaml (and Procfile): discovery, parsing, validation, interpolation.

mod model;

pub use model::*;

use std::collections::HashMap;
use std::path::PathBuf;

/// Where to look for the config.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub space_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub procfile: Option<PathBuf>,
}

/// Why a config could not be loaded. `Display` renders the full, user-facing report.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no space config found")]
    NotFound { searched: Vec<PathBuf> },
}

/// What interpolation needs that only exists at run time.
#[derive(Clone, Debug, Default)]
pub struct ResolveContext {
    /// The gateway port actually used.
    pub port: u16,
    /// Participant name → token.
    pub tokens: HashMap<String, String>,
}

/// Discover, parse and validate the space config. Nothing is spawned or written.
pub fn load(opts: &LoadOptions) -> Result<SpaceConfig, ConfigError> {
    Err(ConfigError::NotFound {
        searched: vec![opts.space_dir.join(".mew/space.yaml")],
    })
}
