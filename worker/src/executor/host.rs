//! Runs one shell command directly on the machine, for one-shot VM workers (a naked AMI booted
//! for one job, `--vm-ami`): no container, so the job sees the machine as its own. The runtime
//! contract stays the container's: `/test_looper` is made a link to the run's directory, so
//! `TEST_INPUTS`, `TEST_OUTPUT_DIR` and the rest name the same paths as in a container, and the
//! command runs in `/test_looper/test_inputs` with only the run's variables (plus `PATH` and
//! `HOME`). Output is streamed to the log as it comes; at the deadline or on cancellation the
//! command's whole process group is killed.

use super::container::CommandEnd;
use super::dirs::RunDirs;
use super::utf8_stream::Utf8Stream;
use rustix::process::{kill_process_group, Pid, Signal};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where the run's directory is linked, as in a container.
pub const RUN_ROOT_LINK: &str = "/test_looper";
/// `PATH` of a VM job.
const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Points [`RUN_ROOT_LINK`] at the run's directory (replacing an earlier link). Refuses when
/// the path exists and is not a link: the machine is not one this worker prepared.
pub fn link_run_root(dirs: &RunDirs) -> std::io::Result<()> {
    link_at(Path::new(RUN_ROOT_LINK), &dirs.root)
}

fn link_at(link: &Path, target: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(link)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a link", link.display()),
            ))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::os::unix::fs::symlink(target, link)
}

/// Runs `/test_looper/command/<script_name>` with `env` until it exits, the deadline passes
/// or `cancelled` fires; its output goes to `log`.
pub async fn run_host_command(
    script_name: &str,
    env: &BTreeMap<String, String>,
    deadline: Instant,
    log: &(dyn Fn(&str) + Send + Sync),
    cancelled: &CancellationToken,
) -> std::io::Result<CommandEnd> {
    let mut child = Command::new("bash")
        .arg(format!("{RUN_ROOT_LINK}/command/{script_name}"))
        .current_dir(format!("{RUN_ROOT_LINK}/test_inputs"))
        .env_clear()
        .env("PATH", JOB_PATH)
        .env("HOME", "/root")
        // `pwd` names the contract's path, not the run directory the link points at.
        .env("PWD", format!("{RUN_ROOT_LINK}/test_inputs"))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pump = async {
        tokio::join!(pump_output(stdout, log), pump_output(stderr, log));
    };
    let wait = async {
        pump.await;
        child.wait().await
    };
    let end = tokio::select! {
        status = wait => CommandEnd::Exited(status?.code().map_or(-1, i64::from)),
        _ = tokio::time::sleep_until(deadline) => CommandEnd::TimedOut,
        _ = cancelled.cancelled() => CommandEnd::Cancelled,
    };
    // Whatever the command left running goes with it.
    if let Some(group) = group.and_then(Pid::from_raw) {
        // Gone already (ESRCH) is fine.
        let _ = kill_process_group(group, Signal::KILL);
    }
    Ok(end)
}

async fn pump_output(stream: Option<impl AsyncRead + Unpin>, log: &(dyn Fn(&str) + Send + Sync)) {
    let Some(mut stream) = stream else {
        return;
    };
    let mut text = Utf8Stream::default();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => log(&text.push(&buffer[..read])),
        }
    }
    log(&text.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_replaces_a_link_and_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("test_looper");
        let first = dir.path().join("run1");
        let second = dir.path().join("run2");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        link_at(&link, &first).unwrap();
        link_at(&link, &second).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), second);
        std::fs::remove_file(&link).unwrap();
        std::fs::create_dir(&link).unwrap();
        assert!(link_at(&link, &first).is_err());
    }
}
