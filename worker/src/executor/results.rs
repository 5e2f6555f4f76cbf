//! Per-test-case results of a run: `testSummary.json` and JUnit XML files found in the test
//! output directory. Whether the run passed is decided by exit codes, never here.
//!
//! Everything is opened through [`super::confined`] (no link is followed, H6) and read with a
//! size limit (L12): a file past it is ignored with a note in the run's log.

use super::confined::{read_bounded, walk_files, ConfinedDir, ConfinedError};
use std::path::{Path, PathBuf};
use test_looper_core::protocol::TestCaseResult;

/// Largest `testSummary.json` read.
pub const MAX_SUMMARY_BYTES: u64 = 16 * 1024 * 1024;
/// Largest JUnit XML file read.
pub const MAX_JUNIT_BYTES: u64 = 16 * 1024 * 1024;
/// JUnit XML bytes read per run, all files together.
pub const MAX_JUNIT_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// Per-case results plus the host paths of each case's individual logs, and notes for the log.
#[derive(Debug, Default)]
pub struct CaseReport {
    pub cases: Vec<TestCaseResult>,
    /// (case name, host path of a log file to upload): a regular file below the run's
    /// directory reached through no link; open it with [`super::confined`] again to upload.
    pub logs: Vec<(String, PathBuf)>,
    pub notes: Vec<String>,
}

/// Reads `testSummary.json` (if present) and every `*.xml` JUnit report under `output_dir`,
/// which is below `root` (the run's directory; nothing outside it is ever opened).
/// `host_path` maps container paths named in `testSummary.json` to host paths.
pub fn collect_cases(
    root: &Path,
    output_dir: &Path,
    host_path: &dyn Fn(&str) -> Option<PathBuf>,
) -> CaseReport {
    let mut report = CaseReport::default();
    let confined = match ConfinedDir::open_root(root) {
        Ok(confined) => confined,
        Err(error) => {
            report
                .notes
                .push(format!("could not read the test results: {error}"));
            return report;
        }
    };
    let Ok(output) = output_dir.strip_prefix(root) else {
        report.notes.push(format!(
            "the output directory {} is outside the run directory",
            output_dir.display()
        ));
        return report;
    };
    match confined.open_file(&output.join("testSummary.json")) {
        Ok(file) => match read_bounded(file, Path::new("testSummary.json"), MAX_SUMMARY_BYTES) {
            Ok(bytes) => read_summary(&bytes, &confined, root, host_path, &mut report),
            Err(error) => report
                .notes
                .push(format!("{}: individual results ignored", describe(&error))),
        },
        Err(error) if error.is_not_found() => {}
        Err(error) => report.notes.push(format!(
            "testSummary.json: {}; individual results ignored",
            describe(&error)
        )),
    }
    read_junit_files(&confined, output, &mut report);
    report
}

/// A confinement error for the run's log (names relative to the output directory).
fn describe(error: &ConfinedError) -> String {
    match error {
        ConfinedError::TooLarge(name, limit) => {
            format!("{name} is larger than {} MiB", limit / (1024 * 1024))
        }
        other => other.to_string(),
    }
}

/// Every `*.xml` file under `output` (relative to `confined`), in path order, read within the
/// limits.
fn read_junit_files(confined: &ConfinedDir, output: &Path, report: &mut CaseReport) {
    let mut found: Vec<(PathBuf, std::fs::File)> = Vec::new();
    let walked = walk_files(confined, output, &mut |path, file| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
        {
            found.push((path.to_path_buf(), file));
        }
    });
    if let Err(error) = walked {
        report
            .notes
            .push(format!("could not list the output directory: {error}"));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut budget = MAX_JUNIT_TOTAL_BYTES;
    for (path, file) in found {
        let display = path.display().to_string();
        if budget == 0 {
            report.notes.push(format!(
                "{display}: ignored, the JUnit reports of this run exceed {} MiB together",
                MAX_JUNIT_TOTAL_BYTES / (1024 * 1024)
            ));
            continue;
        }
        let limit = MAX_JUNIT_BYTES.min(budget);
        match read_bounded(file, &path, limit) {
            Ok(bytes) => {
                budget -= bytes.len() as u64;
                read_junit(&bytes, &display, report);
            }
            Err(error) => report.notes.push(format!("{}; ignored", describe(&error))),
        }
    }
}

fn read_summary(
    bytes: &[u8],
    confined: &ConfinedDir,
    root: &Path,
    host_path: &dyn Fn(&str) -> Option<PathBuf>,
    report: &mut CaseReport,
) {
    let parsed = serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| e.to_string());
    let object = match parsed {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => {
            report
                .notes
                .push("testSummary.json is not a JSON object: individual results ignored".into());
            return;
        }
        Err(error) => {
            report.notes.push(format!(
                "testSummary.json is not valid JSON ({error}): individual results ignored"
            ));
            return;
        }
    };
    for (name, value) in object {
        let (passed, logs) = match value {
            serde_json::Value::Bool(passed) => (passed, Vec::new()),
            serde_json::Value::Object(fields) => {
                let success = fields.get("success").and_then(|v| v.as_bool());
                let logs = match fields.get("logs") {
                    None => Some(Vec::new()),
                    Some(serde_json::Value::Array(items)) => items
                        .iter()
                        .map(|item| item.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>(),
                    Some(_) => None,
                };
                match (success, logs) {
                    (Some(success), Some(logs)) => (success, logs),
                    _ => {
                        report.notes.push(format!(
                            "testSummary.json: entry {name:?} is malformed; recorded as a failure"
                        ));
                        (false, Vec::new())
                    }
                }
            }
            _ => {
                report.notes.push(format!(
                    "testSummary.json: entry {name:?} is neither a bool nor an object; recorded as a failure"
                ));
                (false, Vec::new())
            }
        };
        let mut passed = passed;
        let mut has_logs = false;
        for log in logs {
            let Some(host) = host_path(&log) else {
                report.notes.push(format!(
                    "testSummary.json: log {log:?} of {name:?} is not under a mounted directory; the case is recorded as a failure"
                ));
                passed = false;
                continue;
            };
            let opened = match host.strip_prefix(root) {
                Ok(relative) => confined.open_file(relative).map(drop),
                Err(_) => Err(ConfinedError::Outside(log.clone())),
            };
            match opened {
                Ok(()) => {
                    has_logs = true;
                    report.logs.push((name.clone(), host));
                }
                Err(error) => {
                    report.notes.push(format!(
                        "testSummary.json: log {log:?} of {name:?} was not read ({error}); the case is recorded as a failure"
                    ));
                    passed = false;
                }
            }
        }
        report.cases.push(TestCaseResult {
            name,
            passed,
            has_logs,
        });
    }
}

fn read_junit(bytes: &[u8], display: &str, report: &mut CaseReport) {
    let suites = match junit_parser::from_reader(bytes) {
        Ok(suites) => suites,
        Err(error) => {
            report
                .notes
                .push(format!("{display}: not a JUnit report ({error}); ignored"));
            return;
        }
    };
    let mut pending: Vec<&junit_parser::TestSuite> = suites.suites.iter().collect();
    while let Some(suite) = pending.pop() {
        pending.extend(suite.suites.iter());
        for case in &suite.cases {
            if case.status.is_skipped() {
                continue;
            }
            let prefix = case
                .classname
                .as_deref()
                .filter(|c| !c.is_empty())
                .unwrap_or(suite.name.as_str());
            let base = if case.original_name.is_empty() {
                &case.name
            } else {
                &case.original_name
            };
            let name = if prefix.is_empty() {
                base.clone()
            } else {
                format!("{prefix}.{base}")
            };
            report.cases.push(TestCaseResult {
                name,
                passed: case.status.is_success(),
                has_logs: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_paths(_: &str) -> Option<PathBuf> {
        None
    }

    #[test]
    fn summary_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("case.log");
        std::fs::write(&log, "log").unwrap();
        std::fs::write(
            dir.path().join("testSummary.json"),
            r#"{"a": true, "b": false, "c": {"success": true, "logs": ["/c/case.log"]},
                "d": {"success": true, "logs": ["/elsewhere"]}, "e": 3, "f": {"logs": []}}"#,
        )
        .unwrap();
        let log_for = log.clone();
        let map = move |p: &str| (p == "/c/case.log").then(|| log_for.clone());
        let mut report = collect_cases(dir.path(), dir.path(), &map);
        report.cases.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<(&str, bool, bool)> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.passed, c.has_logs))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", true, false),
                ("b", false, false),
                ("c", true, true),
                ("d", false, false),
                ("e", false, false),
                ("f", false, false)
            ]
        );
        assert_eq!(report.logs, vec![("c".to_string(), log)]);
        assert_eq!(report.notes.len(), 3);
    }

    #[test]
    fn a_broken_summary_drops_everything_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("testSummary.json"), "[1,2").unwrap();
        let report = collect_cases(dir.path(), dir.path(), &no_paths);
        assert!(report.cases.is_empty());
        assert_eq!(report.notes.len(), 1);
    }

    #[test]
    fn junit_cases_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("reports")).unwrap();
        std::fs::write(
            dir.path().join("reports/junit.xml"),
            r#"<?xml version="1.0"?>
<testsuites><testsuite name="math" tests="3">
  <testcase classname="math.Add" name="small"/>
  <testcase classname="math.Add" name="big"><failure message="overflow"/></testcase>
  <testcase classname="math.Add" name="skipped"><skipped/></testcase>
</testsuite></testsuites>"#,
        )
        .unwrap();
        let report = collect_cases(dir.path(), dir.path(), &no_paths);
        let got: Vec<(&str, bool)> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.passed))
            .collect();
        assert_eq!(got, vec![("math.Add.small", true), ("math.Add.big", false)]);
    }

    #[test]
    fn planted_links_are_refused_and_big_files_ignored() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let output = root.join("output");
        std::fs::create_dir_all(&output).unwrap();
        symlink("/etc/hostname", output.join("e")).unwrap();
        std::fs::write(
            output.join("testSummary.json"),
            r#"{"t": {"success": true, "logs": ["/o/e"]}}"#,
        )
        .unwrap();
        let host = output.join("e");
        let map = move |p: &str| (p == "/o/e").then(|| host.clone());
        let report = collect_cases(root, &output, &map);
        assert_eq!(report.cases.len(), 1);
        assert!(!report.cases[0].passed);
        assert!(report.logs.is_empty());
        assert!(
            report.notes[0].contains("symbolic link"),
            "{:?}",
            report.notes
        );

        // A linked summary is not read at all.
        std::fs::remove_file(output.join("testSummary.json")).unwrap();
        std::fs::write(root.join("real.json"), r#"{"x": true}"#).unwrap();
        symlink(root.join("real.json"), output.join("testSummary.json")).unwrap();
        let report = collect_cases(root, &output, &no_paths);
        assert!(report.cases.is_empty());
        assert!(
            report.notes[0].contains("symbolic link"),
            "{:?}",
            report.notes
        );

        // Past the limit: a note, no parse.
        std::fs::remove_file(output.join("testSummary.json")).unwrap();
        let file = std::fs::File::create(output.join("testSummary.json")).unwrap();
        file.set_len(MAX_SUMMARY_BYTES + 1).unwrap();
        let file = std::fs::File::create(output.join("big.xml")).unwrap();
        file.set_len(MAX_JUNIT_BYTES + 1).unwrap();
        let report = collect_cases(root, &output, &no_paths);
        assert!(report.cases.is_empty());
        assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
        assert!(report
            .notes
            .iter()
            .all(|n| n.contains("larger than 16 MiB")));
    }
}
