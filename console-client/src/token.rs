//! Where the console client's token comes from: given once (`--token`, `ROOMS_TOKEN`), or a
//! command that prints a fresh one (`--token-command`) whenever one is needed.

use std::time::Duration;

use room_protocol::bounds::MAX_TOKEN_BYTES;
use tokio::process::Command;

/// See the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    Fixed(String),
    Command(String),
}

impl std::fmt::Debug for TokenSource {
    /// Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Fixed(_) => f.write_str("Fixed(..)"),
            TokenSource::Command(command) => f.debug_tuple("Command").field(command).finish(),
        }
    }
}

impl TokenSource {
    /// Whether a new token can be had when this one expires.
    pub fn renewable(&self) -> bool {
        matches!(self, TokenSource::Command(_))
    }

    /// A token: the fixed one, or what the command prints (its one line), within `patience`.
    /// The error is said on a status line and never holds a token.
    pub async fn fetch(&self, patience: Duration) -> Result<String, String> {
        let command = match self {
            TokenSource::Fixed(token) => return Ok(token.clone()),
            TokenSource::Command(command) => command,
        };
        let run = Command::new("sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(patience, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => return Err(format!("--token-command cannot run: {error}")),
            Err(_) => {
                return Err(format!(
                    "--token-command printed no token within {} s",
                    patience.as_secs_f64()
                ));
            }
        };
        if !output.status.success() {
            return Err(format!("--token-command failed ({})", output.status));
        }
        let printed = String::from_utf8(output.stdout)
            .map_err(|_| "--token-command printed something that is not text".to_owned())?;
        let token = printed.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.contains(char::is_whitespace)
        {
            return Err(
                "--token-command must print one token (a line of at most 8 KiB)".to_owned(),
            );
        }
        Ok(token.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_prints_the_token_and_its_failures_are_said_without_it() {
        let patience = Duration::from_secs(5);
        let echo = TokenSource::Command("echo a.b.c".into());
        assert_eq!(echo.fetch(patience).await, Ok("a.b.c".to_owned()));
        let failing = TokenSource::Command("echo secret.tok.en; exit 3".into());
        let error = failing.fetch(patience).await.expect_err("fails");
        assert!(!error.contains("secret"), "{error}");
        let two = TokenSource::Command("echo a b".into());
        assert!(two.fetch(patience).await.is_err());
        let slow = TokenSource::Command("sleep 5".into());
        assert!(slow.fetch(Duration::from_millis(100)).await.is_err());
        assert_eq!(
            TokenSource::Fixed("x".into()).fetch(patience).await,
            Ok("x".into())
        );
    }
}
