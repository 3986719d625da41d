//! What a command can fail with, and the exit code each failure means.
//! `main` prints them, in one place: `Display` is the whole message.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::ConnectError;
use crate::config::ConfigError;

/// Exit code of a usage error (an unknown process name, a bad duration).
pub const USAGE: u8 = 2;
/// Exit code when the space is not running.
pub const NOT_RUNNING: u8 = 3;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config could not be loaded (its own message, file:line:col).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// What was asked makes no sense (exit 2).
    #[error("mew: {0}")]
    Usage(String),
    /// No server runs for the space in this directory (exit 3).
    #[error("mew: the space in {} is not running (start it with \"mew space up\")", .0.display())]
    NotRunning(PathBuf),
    /// `logs -f` with no server to follow (exit 3).
    #[error("mew: the space is not running; nothing to follow")]
    NothingToFollow,
    /// Anything else (exit 1).
    #[error("mew: {0}")]
    Failed(String),
    /// A failure in the words of the command that has always said it that
    /// way: `<who>: <why>` (`mew gateway: …`, `mew token create: …`,
    /// `error: …` for `init`), with its exit code.
    #[error("{who}: {why}")]
    Said {
        who: &'static str,
        why: String,
        code: u8,
    },
}

impl Error {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Config(e) => e.exit_code(),
            Error::Usage(_) => USAGE,
            Error::NotRunning(_) | Error::NothingToFollow => NOT_RUNNING,
            Error::Failed(_) => 1,
            Error::Said { code, .. } => *code,
        })
    }

    /// `<who>: <why>`, exit `code`.
    pub fn said(who: &'static str, code: u8, why: impl Into<String>) -> Error {
        Error::Said {
            who,
            why: why.into(),
            code,
        }
    }

    /// A failed connection to the space server of `space_dir`.
    pub fn connect(space_dir: &std::path::Path, e: ConnectError) -> Error {
        match e {
            ConnectError::NotRunning => Error::NotRunning(space_dir.to_path_buf()),
            ConnectError::Failed(why) | ConnectError::Unsafe(why) => Error::Failed(why),
        }
    }
}

/// Server answers and lost connections are reported as they are.
impl From<String> for Error {
    fn from(why: String) -> Error {
        Error::Failed(why)
    }
}

/// What a command ends with: its exit code (not always 0: `attach` passes
/// on the space's), or an error for `main` to print.
pub type Outcome = Result<ExitCode, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_what_it_always_said_with_its_exit_code() {
        let cases = [
            (
                Error::Usage("--since: bad".into()),
                "mew: --since: bad",
                USAGE,
            ),
            (
                Error::NotRunning("/tmp/x".into()),
                "mew: the space in /tmp/x is not running (start it with \"mew space up\")",
                NOT_RUNNING,
            ),
            (
                Error::NothingToFollow,
                "mew: the space is not running; nothing to follow",
                NOT_RUNNING,
            ),
            (Error::from("lost it".to_string()), "mew: lost it", 1),
            (Error::said("mew gateway", 2, "bad"), "mew gateway: bad", 2),
        ];
        for (e, text, code) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.exit_code(), ExitCode::from(code));
        }
        let e = Error::connect(
            std::path::Path::new("/d"),
            ConnectError::Unsafe("no".into()),
        );
        assert_eq!(e.to_string(), "mew: no");
        let e = Error::connect(std::path::Path::new("/d"), ConnectError::NotRunning);
        assert_eq!(e.exit_code(), ExitCode::from(NOT_RUNNING));
    }
}
