//! Preparing the environment of a job, shared by runs and deployments: the environment image
//! (built once per Dockerfile), the dependencies unpacked under `TEST_INPUTS`, and the job's
//! variables (the definition's overlaid with the runtime ones).

use super::dirs::RunDirs;
use super::image::ImageError;
use super::inputs::{provide, InputError};
use super::Executor;
use std::collections::BTreeMap;
use test_looper_core::definitions::variables::{docker_runtime_variables, resolve};
use test_looper_core::definitions::{Image, ResolvedDefinition};
use test_looper_core::protocol::FailureReason;

/// What a job's containers start from.
#[derive(Debug, Clone)]
pub struct PreparedEnvironment {
    /// Tag of the environment image.
    pub image: String,
    /// Every variable of the job (definition and runtime), resolved.
    pub env: BTreeMap<String, String>,
}

/// Why the environment could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl PrepareFailure {
    fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The machine share and id a job runs with.
#[derive(Debug, Clone, Copy)]
pub struct JobShape<'a> {
    /// Run or deployment id (`TEST_LOOPER_TEST_ID`).
    pub id: &'a str,
    pub cores: u32,
    pub ram_gb: u32,
}

/// Builds (or reuses) the image, places every dependency in `dirs` and resolves the variables.
/// Progress goes to `log`.
pub async fn prepare_environment(
    executor: &Executor,
    definition: &ResolvedDefinition,
    dirs: &RunDirs,
    shape: JobShape<'_>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<PreparedEnvironment, PrepareFailure> {
    let dockerfile = match &definition.environment.image {
        Image::Docker {
            dockerfile_contents,
            ..
        } => dockerfile_contents.clone(),
        Image::Ami { .. } => {
            return Err(PrepareFailure::new(
                FailureReason::EnvironmentError,
                "this environment needs a VM image; a Docker worker cannot run it",
            ))
        }
    };
    let image = match executor
        .images
        .ensure(&executor.docker, &dockerfile, log)
        .await
    {
        Ok((tag, _)) => tag,
        Err(ImageError::BuildFailed { message, .. }) => {
            return Err(PrepareFailure::new(
                FailureReason::EnvironmentError,
                format!("environment image build failed: {message}"),
            ))
        }
        Err(ImageError::Engine(error)) => {
            return Err(PrepareFailure::new(
                FailureReason::Infrastructure,
                format!("docker engine: {error}"),
            ))
        }
    };

    let cache = executor.storage.join("cache");
    for (name, dependency) in definition.all_dependencies() {
        if let Err(error) = provide(
            &name,
            &dependency,
            &dirs.test_inputs(),
            &cache,
            executor.store.as_ref(),
            executor.sources.as_ref(),
            log,
        )
        .await
        {
            let reason = match error {
                InputError::Missing(_) => FailureReason::EnvironmentError,
                InputError::Infrastructure(_) => FailureReason::Infrastructure,
            };
            return Err(PrepareFailure::new(
                reason,
                format!("input {name}: {error}"),
            ));
        }
    }

    let env = job_variables(definition, shape, log);
    Ok(PreparedEnvironment { image, env })
}

/// The definition's variables with the runtime ones on top, resolved. A variable cycle is
/// reported to `log` and the variables are used unresolved.
pub fn job_variables(
    definition: &ResolvedDefinition,
    shape: JobShape<'_>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> BTreeMap<String, String> {
    let runtime = docker_runtime_variables(
        u64::from(shape.cores),
        u64::from(shape.ram_gb),
        Some(shape.id),
    );
    resolve(&definition.variables, &runtime).unwrap_or_else(|error| {
        log(&format!("{error}; variables used unresolved\n"));
        let mut env = definition.variables.clone();
        env.extend(runtime.clone());
        env
    })
}

/// `${NAME}` → value for every variable.
pub fn substitute(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in env {
        let pattern = format!("${{{name}}}");
        if out.contains(&pattern) {
            out = out.replace(&pattern, value);
        }
    }
    out
}
