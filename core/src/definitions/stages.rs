//! Stages and artifacts (§7): the implicit `command`/`cleanup` stage, the final stage list
//! (environment stages, then the definition's, stably sorted by `order`), substitution of
//! stage text, and the artifact rules (unique names; the unnamed artifact only alone).

use std::collections::BTreeMap;

use super::model::{Artifact, DefinitionKind, Stage};
use super::variables::substitute_in_place;

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
    let mut stages: Vec<Stage> =
        Vec::with_capacity(environment_stages.len() + own_stages.len() + 1);
    stages.extend(environment_stages.iter().chain(own_stages).cloned());
    if !command.is_empty() || !cleanup.is_empty() {
        let artifacts = match kind {
            DefinitionKind::Build => vec![Artifact {
                directory: "${TEST_BUILD_OUTPUT_DIR}".into(),
                ..Artifact::default()
            }],
            DefinitionKind::Test => vec![Artifact {
                directory: "${TEST_OUTPUT_DIR}".into(),
                ..Artifact::default()
            }],
            DefinitionKind::Deployment => Vec::new(),
        };
        stages.push(Stage {
            command: command.to_owned(),
            cleanup: cleanup.to_owned(),
            order: SHORTHAND_ORDER,
            artifacts,
        });
    }
    stages.sort_by(|a, b| a.order.total_cmp(&b.order));
    for stage in &mut stages {
        substitute_in_place(&mut stage.command, variables);
        substitute_in_place(&mut stage.cleanup, variables);
        for artifact in &mut stage.artifacts {
            substitute_in_place(&mut artifact.name, variables);
            substitute_in_place(&mut artifact.directory, variables);
            for pattern in artifact
                .include_patterns
                .iter_mut()
                .chain(artifact.exclude_patterns.iter_mut())
            {
                substitute_in_place(pattern, variables);
            }
        }
    }
    stages
}

/// Check the artifact rules for definition `name`.
pub fn check_artifacts(name: &str, stages: &[Stage]) -> Result<(), String> {
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
