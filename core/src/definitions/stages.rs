//! Stages and artifacts (§7): the implicit `command`/`cleanup` stage, the final stage list
//! (environment stages, then the definition's, stably sorted by `order`), substitution of
//! stage text, and the artifact rules (unique names; the unnamed artifact only alone).

use std::collections::BTreeMap;

use super::model::{Artifact, DefinitionKind, Stage};
use super::variables::substitute;

/// `order` of the implicit stage made from `command`/`cleanup`.
pub const SHORTHAND_ORDER: f64 = 1e9;

/// The full, sorted, substituted stage list of a definition.
pub fn assemble(
    kind: DefinitionKind,
    environment_stages: &[Stage],
    own_stages: &[Stage],
    command: &str,
    cleanup: &str,
    variables: &BTreeMap<String, String>,
) -> Vec<Stage> {
    // Each stage is copied once, substituted; substitution never changes `order`, so
    // sorting afterwards gives the same list as sorting first.
    let mut stages: Vec<Stage> =
        Vec::with_capacity(environment_stages.len() + own_stages.len() + 1);
    stages.extend(environment_stages.iter().chain(own_stages).map(|stage| {
        Stage {
            command: substitute(&stage.command, variables),
            cleanup: substitute(&stage.cleanup, variables),
            order: stage.order,
            artifacts: stage
                .artifacts
                .iter()
                .map(|artifact| Artifact {
                    name: substitute(&artifact.name, variables),
                    directory: substitute(&artifact.directory, variables),
                    include_patterns: substitute_all(&artifact.include_patterns, variables),
                    exclude_patterns: substitute_all(&artifact.exclude_patterns, variables),
                    format: artifact.format,
                })
                .collect(),
        }
    }));
    if !command.is_empty() || !cleanup.is_empty() {
        let output_directory = match kind {
            DefinitionKind::Build => Some("${TEST_BUILD_OUTPUT_DIR}"),
            DefinitionKind::Test => Some("${TEST_OUTPUT_DIR}"),
            DefinitionKind::Deployment => None,
        };
        stages.push(Stage {
            command: substitute(command, variables),
            cleanup: substitute(cleanup, variables),
            order: SHORTHAND_ORDER,
            artifacts: output_directory
                .map(|directory| Artifact {
                    directory: substitute(directory, variables),
                    ..Artifact::default()
                })
                .into_iter()
                .collect(),
        });
    }
    stages.sort_by(|a, b| a.order.total_cmp(&b.order));
    stages
}

fn substitute_all(texts: &[String], variables: &BTreeMap<String, String>) -> Vec<String> {
    texts.iter().map(|t| substitute(t, variables)).collect()
}

/// Check the artifact rules for definition `name`.
pub fn check_artifacts(name: &str, stages: &[Stage]) -> Result<(), String> {
    if stages.iter().map(|s| s.artifacts.len()).sum::<usize>() <= 1 {
        // No two artifacts: nothing can clash.
        return Ok(());
    }
    let artifacts: Vec<&Artifact> = stages.iter().flat_map(|s| &s.artifacts).collect();
    // Definitions have a handful of artifacts: a quadratic scan beats a hash set.
    for (i, artifact) in artifacts.iter().enumerate() {
        if artifacts[..i].iter().any(|a| a.name == artifact.name) {
            if artifact.name.is_empty() {
                return Err(format!(
                    "Test {name} defined the unnamed artifact twice (a naked 'command' defines one; give the other a name)"
                ));
            }
            return Err(format!(
                "Test {name} defined artifact '{}' twice",
                artifact.name
            ));
        }
    }
    if artifacts.len() > 1 && artifacts.iter().any(|a| a.name.is_empty()) {
        return Err(format!(
            "Test {name} can only define the unnamed artifact if it defines no others (a naked 'command' defines the unnamed artifact)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(command: &str, order: f64, artifacts: &[&str]) -> Stage {
        Stage {
            command: command.into(),
            order,
            artifacts: artifacts
                .iter()
                .map(|n| Artifact {
                    name: (*n).into(),
                    ..Artifact::default()
                })
                .collect(),
            ..Stage::default()
        }
    }

    #[test]
    fn e17_order_and_e16_artifacts() {
        let env = [stage("envstage", 0.0, &[])];
        let own = [stage("early", -1.0, &[]), stage("mid", 5.0, &["a"])];
        let stages = assemble(DefinitionKind::Build, &env, &own, "", "", &BTreeMap::new());
        let commands: Vec<&str> = stages.iter().map(|s| s.command.as_str()).collect();
        assert_eq!(commands, ["early", "envstage", "mid"]);
        assert!(check_artifacts("y/linux", &stages).is_ok());

        let twice = [stage("a", 0.0, &["x"]), stage("b", 0.0, &["x"])];
        assert!(check_artifacts("t", &twice)
            .unwrap_err()
            .contains("defined artifact 'x' twice"));
        let mixed = assemble(
            DefinitionKind::Build,
            &[],
            &[stage("a", 0.0, &["a"])],
            "cmd",
            "",
            &BTreeMap::new(),
        );
        assert!(check_artifacts("t", &mixed)
            .unwrap_err()
            .contains("can only define the unnamed artifact if it defines no others"));
    }
}
