//! The dependency grammar (docs/definitions.md#dependencies): a dependency value such as
//! `HEAD`, `HEAD/source/docs`, `build/linux`, `lib`, `lib/source/p`, `lib/core/linux`
//! parsed into a [`DependencyRef`], and validation of dependency keys.
//!
//! Deliberate differences from the original: `R/X` (two parts, `X != source`) is build `X`
//! of repo `R`; keys with `$`, `..` segments or absolute paths are rejected for every
//! definition.

/// What a dependency value refers to, before resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependencyRef {
    /// Source of the current (root) commit, or of a repo by local name, with a sub-path.
    Source { repo: Option<String>, path: String },
    /// A build (plus optional artifact suffix) of the current commit, by full name.
    InternalBuild { name: String },
    /// A build (plus optional artifact suffix) of the commit a repo points to.
    ExternalBuild { repo: String, name: String },
}

/// Whether the dependency is declared by an environment (stricter grammar) or a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declarer {
    Environment,
    Definition,
}

/// Parse a (substituted) dependency value. `is_repo` says whether a name is a local repo.
pub fn parse_dependency(
    value: &str,
    declarer: Declarer,
    is_repo: &dyn Fn(&str) -> bool,
) -> Result<DependencyRef, String> {
    let parts: Vec<&str> = value.split('/').collect();
    let first = parts[0];
    let rest = || {
        value
            .split_once('/')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    };
    if first.contains('$') {
        return Err(format!(
            "Invalid dependency: {value}. First part of dependencies can't have a substitution. Use 'HEAD' as a prefix if you want to refer to a build in this commit."
        ));
    }
    if value.is_empty() {
        return Err("a dependency can't be empty".into());
    }
    if first == "HEAD" {
        return match parts.len() {
            1 => Ok(DependencyRef::Source {
                repo: None,
                path: String::new(),
            }),
            _ if parts[1] == "source" => Ok(DependencyRef::Source {
                repo: None,
                path: parts[2..].join("/"),
            }),
            2 if declarer == Declarer::Environment => Err(malformed()),
            _ => Ok(DependencyRef::InternalBuild { name: rest() }),
        };
    }
    if is_repo(first) {
        return match parts.len() {
            1 => Ok(DependencyRef::Source {
                repo: Some(first.to_owned()),
                path: String::new(),
            }),
            _ if parts[1] == "source" => Ok(DependencyRef::Source {
                repo: Some(first.to_owned()),
                path: parts[2..].join("/"),
            }),
            _ => Ok(DependencyRef::ExternalBuild {
                repo: first.to_owned(),
                name: rest(),
            }),
        };
    }
    match declarer {
        Declarer::Environment => Err(format!(
            "Environment dependencies must reference a named repo. Can't find {first} for {value}"
        )),
        Declarer::Definition => Ok(DependencyRef::InternalBuild {
            name: value.to_owned(),
        }),
    }
}

fn malformed() -> String {
    "Malformed repo dependency: should be of form 'repoReference/buildName/environment'".to_owned()
}

/// Validate a (substituted) dependency key: the on-disk location under `TEST_INPUTS`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a dependency key can't be empty".into());
    }
    if key.contains('$') {
        return Err(format!(
            "dependency key {key:?} still contains '$' after substitution"
        ));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(format!("dependency key {key:?} can't be an absolute path"));
    }
    if key.split(['/', '\\']).any(|segment| segment == "..") {
        return Err(format!("dependency key {key:?} can't contain '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str, declarer: Declarer) -> Result<DependencyRef, String> {
        parse_dependency(value, declarer, &|name| name == "lib")
    }

    #[test]
    fn e14_forms() {
        use DependencyRef::*;
        let d = Declarer::Definition;
        assert_eq!(
            parse("HEAD", d),
            Ok(Source {
                repo: None,
                path: String::new()
            })
        );
        assert_eq!(
            parse("HEAD/source/docs", d),
            Ok(Source {
                repo: None,
                path: "docs".into()
            })
        );
        assert_eq!(
            parse("b/linux", d),
            Ok(InternalBuild {
                name: "b/linux".into()
            })
        );
        assert_eq!(
            parse("HEAD/b/linux", d),
            Ok(InternalBuild {
                name: "b/linux".into()
            })
        );
        assert_eq!(
            parse("lib", d),
            Ok(Source {
                repo: Some("lib".into()),
                path: String::new()
            })
        );
        assert_eq!(
            parse("lib/source", d),
            Ok(Source {
                repo: Some("lib".into()),
                path: String::new()
            })
        );
        assert_eq!(
            parse("lib/core/linux", d),
            Ok(ExternalBuild {
                repo: "lib".into(),
                name: "core/linux".into()
            })
        );
        assert_eq!(
            parse("lib/single", d),
            Ok(ExternalBuild {
                repo: "lib".into(),
                name: "single".into()
            })
        );
        assert!(parse("${KIND}/build", d)
            .unwrap_err()
            .contains("First part of dependencies can't have a substitution"));
        let e = Declarer::Environment;
        assert!(parse("build/linux", e)
            .unwrap_err()
            .contains("Environment dependencies must reference a named repo"));
        assert!(parse("HEAD/build", e)
            .unwrap_err()
            .contains("Malformed repo dependency"));
        assert!(check_key("in_k1").is_ok());
        assert!(check_key("../x").is_err());
        assert!(check_key("/abs").is_err());
        assert!(check_key("a${X}").is_err());
    }
}
