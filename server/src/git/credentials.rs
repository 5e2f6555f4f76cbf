//! How the `git` command line authenticates to GitHub/GitLab without credentials ever
//! reaching a command line, a URL, a log line or a page.
//!
//! An https token is passed as an `Authorization` header through `GIT_CONFIG_*` environment
//! variables (not visible in `ps`), an ssh key through `GIT_SSH_COMMAND`. Any text coming back
//! from `git` is passed through [`GitCredentials::redact`] before it is logged or returned.

use base64::Engine;
use std::path::PathBuf;
use std::process::Command;

/// Credentials for network fetches and pushes.
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// `(user, token)` for https basic auth (`x-access-token` on GitHub, `oauth2` on GitLab).
    pub https_token: Option<(String, String)>,
    /// Private key for ssh URLs.
    pub ssh_key: Option<PathBuf>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field(
                "https_token",
                &self.https_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

impl GitCredentials {
    /// A `git` command with the credentials in its environment and no prompts.
    pub fn git_command(&self) -> Command {
        let mut command = Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .env_remove("GIT_DIR");
        if let Some((user, token)) = &self.https_token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        if let Some(key) = &self.ssh_key {
            // git runs this through the shell: the path is quoted as one word (L7).
            command.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                    shell_quote(&key.to_string_lossy())
                ),
            );
        }
        command
    }

    /// `text` with every secret (the token and its base64 form) replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some((user, token)) = &self.https_token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            for secret in [basic.as_str(), token.as_str()] {
                if !secret.is_empty() {
                    out = out.replace(secret, "<redacted>");
                }
            }
        }
        out
    }
}

/// `text` as one single-quoted POSIX shell word (a `'` inside becomes `'\''`).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_key_paths_stay_one_shell_word() {
        let credentials = GitCredentials {
            https_token: None,
            ssh_key: Some(PathBuf::from("/keys/it's'; touch /tmp/pwned; '")),
        };
        let command = credentials.git_command();
        let ssh = command
            .get_envs()
            .find(|(name, _)| *name == "GIT_SSH_COMMAND")
            .and_then(|(_, value)| value)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // The shell reads the quoted path back as exactly the original path.
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -- {}; printf '%s\\n' \"$#\" \"$2\"",
                ssh.trim_start_matches("ssh ")
            ))
            .output()
            .unwrap();
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(printed, "8\n/keys/it's'; touch /tmp/pwned; '\n", "{ssh}");
    }

    #[test]
    fn tokens_are_redacted_and_not_in_debug_output() {
        let credentials = GitCredentials {
            https_token: Some(("x-access-token".into(), "ghp_secret".into())),
            ssh_key: None,
        };
        assert_eq!(
            credentials.redact("fatal: ghp_secret rejected"),
            "fatal: <redacted> rejected"
        );
        assert!(!format!("{credentials:?}").contains("ghp_secret"));
    }
}
