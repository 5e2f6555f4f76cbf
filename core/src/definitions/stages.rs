//! Stages and artifacts (docs/definitions.md#stages-and-artifacts): the implicit
//! `command`/`cleanup` stage, the final stage list (environment stages, then the
//! definition's, stably sorted by `order`), substitution of stage text, and the artifact
//! rules (unique names; the unnamed artifact only alone). Substitution is bounded by the
//! resolution's [`Budget`] (H4).

use std::collections::BTreeMap;

use super::limits::{Budget, Counter, LimitExceeded};
use super::model::{Artifact, DefinitionKind, Stage};
use super::variables::substitute_within;

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
    budget: &mut Budget,
) -> Result<Vec<Stage>, LimitExceeded> {
    // Each substituted text is charged to the resolved bytes as it is made.
    let mut substitute = |text: &str| {
        let out = substitute_within(text, variables, budget)?.into_owned();
        budget.charge(Counter::ResolvedBytes, out.len())?;
        Ok(out)
    };
    // Each stage is copied once, substituted; substitution never changes `order`, so
    // sorting afterwards gives the same list as sorting first.
    let mut stages: Vec<Stage> =
        Vec::with_capacity(environment_stages.len() + own_stages.len() + 1);
    for stage in environment_stages.iter().chain(own_stages) {
        let mut artifacts = Vec::with_capacity(stage.artifacts.len());
        for artifact in &stage.artifacts {
            artifacts.push(Artifact {
                name: substitute(&artifact.name)?,
                directory: substitute(&artifact.directory)?,
                include_patterns: substitute_all(&artifact.include_patterns, &mut substitute)?,
                exclude_patterns: substitute_all(&artifact.exclude_patterns, &mut substitute)?,
                format: artifact.format,
            });
        }
        stages.push(Stage {
            command: substitute(&stage.command)?,
            cleanup: substitute(&stage.cleanup)?,
            order: stage.order,
            artifacts,
        });
    }
    if !command.is_empty() || !cleanup.is_empty() {
        let output_directory = match kind {
            DefinitionKind::Build => Some("${TEST_BUILD_OUTPUT_DIR}"),
            DefinitionKind::Test => Some("${TEST_OUTPUT_DIR}"),
            DefinitionKind::Deployment => None,
        };
        let artifacts = match output_directory {
            Some(directory) => vec![Artifact {
                directory: substitute(directory)?,
                ..Artifact::default()
            }],
            None => Vec::new(),
        };
        stages.push(Stage {
            command: substitute(command)?,
            cleanup: substitute(cleanup)?,
            order: SHORTHAND_ORDER,
            artifacts,
        });
    }
    stages.sort_by(|a, b| a.order.total_cmp(&b.order));
    Ok(stages)
}

fn substitute_all(
    texts: &[String],
    substitute: &mut impl FnMut(&str) -> Result<String, LimitExceeded>,
) -> Result<Vec<String>, LimitExceeded> {
    texts.iter().map(|t| substitute(t)).collect()
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
        let stages = assemble(
            DefinitionKind::Build,
            &env,
            &own,
            "",
            "",
            &BTreeMap::new(),
            &mut Budget::new(),
        )
        .expect("small");
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
            &mut Budget::new(),
        )
        .expect("small");
        assert!(check_artifacts("t", &mixed)
            .unwrap_err()
            .contains("can only define the unnamed artifact if it defines no others"));
    }
}
