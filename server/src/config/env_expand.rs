//! `${VAR}` expansion of configuration text before it is parsed.
//!
//! Supported forms: `${VAR}` (an unset variable is an error naming it and its line),
//! `${VAR:-default}` (the default when unset or empty) and `$${` for a literal `${`.
//! Line structure is preserved so that YAML errors still point at the right line.

use super::ConfigError;

/// Expands `${VAR}` references in `text` using `lookup` for variable values.
pub fn expand_env_vars(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let line = text[..text.len() - after.len()].matches('\n').count() + 1;
        let Some(end) = body_start.find('}') else {
            return Err(ConfigError::Expansion {
                line,
                message: "unterminated `${`".into(),
            });
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::Expansion {
                line,
                message: format!("`${{{body}}}` is not a valid variable reference"),
            });
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(ConfigError::Expansion {
                    line,
                    message: format!("environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"),
                })
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        let text = "a: ${HOME}/x\nb: ${MISSING:-dflt}\nc: ${EMPTY:-e}\nd: $$HOME $${HOME}";
        assert_eq!(
            expand_env_vars(text, env).unwrap(),
            "a: /home/me/x\nb: dflt\nc: e\nd: $$HOME ${HOME}"
        );
    }

    #[test]
    fn unset_variable_names_itself_and_line() {
        let err = expand_env_vars("a: 1\nb: ${NOPE}\n", env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOPE") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand_env_vars("x: ${HOME", env).is_err());
        assert!(expand_env_vars("x: ${HO ME}", env).is_err());
    }
}
