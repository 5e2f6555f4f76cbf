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
    /// Tag of the environment image (on a one-shot VM: its AMI, the job runs on the machine).
    pub image: String,
    /// On a one-shot VM: the environment's setup script, run on the machine before the job.
    pub vm_setup_script: Option<String>,
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
    let (image, vm_setup_script) = match &definition.environment.image {
        Image::Docker {
            dockerfile_contents,
            ..
        } if executor.vm_ami.is_none() => (
            docker_image(executor, dockerfile_contents, log).await?,
            None,
        ),
        Image::Ami {
            base_ami,
            setup_script_contents,
        } if executor.vm_ami.as_deref() == Some(base_ami.as_str()) => {
            (base_ami.clone(), Some(setup_script_contents.clone()))
        }
        Image::Docker { .. } => {
            return Err(PrepareFailure::new(
                FailureReason::EnvironmentError,
                "this environment needs Docker; a one-shot VM worker cannot run it",
            ))
        }
        Image::Ami { base_ami, .. } => {
            return Err(PrepareFailure::new(
                FailureReason::EnvironmentError,
                format!(
                    "this environment needs a VM booted from {base_ami}; this worker is not one"
                ),
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
    Ok(PreparedEnvironment {
        image,
        vm_setup_script,
        env,
    })
}

/// The environment image built from `dockerfile` (or reused).
async fn docker_image(
    executor: &Executor,
    dockerfile: &str,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, PrepareFailure> {
    match executor
        .images
        .ensure(&executor.docker, dockerfile, log)
        .await
    {
        Ok((tag, _)) => Ok(tag),
        Err(ImageError::BuildFailed { message, .. }) => Err(PrepareFailure::new(
            FailureReason::EnvironmentError,
            format!("environment image build failed: {message}"),
        )),
        Err(ImageError::Engine(error)) => Err(PrepareFailure::new(
            FailureReason::Infrastructure,
            format!("docker engine: {error}"),
        )),
    }
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
