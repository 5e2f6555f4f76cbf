//! Per-test-case results of a run: `testSummary.json` and JUnit XML files found in the test
//! output directory. Whether the run passed is decided by exit codes, never here.

use std::path::{Path, PathBuf};
use test_looper_core::protocol::TestCaseResult;

/// Per-case results plus the host paths of each case's individual logs, and notes for the log.
#[derive(Debug, Default)]
pub struct CaseReport {
    pub cases: Vec<TestCaseResult>,
    /// (case name, host path of a log file to upload).
    pub logs: Vec<(String, PathBuf)>,
    pub notes: Vec<String>,
}

/// Reads `testSummary.json` (if present) and every `*.xml` JUnit report under `output_dir`.
/// `host_path` maps container paths named in `testSummary.json` to host paths.
pub fn collect_cases(output_dir: &Path, host_path: &dyn Fn(&str) -> Option<PathBuf>) -> CaseReport {
    let mut report = CaseReport::default();
    let summary = output_dir.join("testSummary.json");
    if summary.is_file() {
        read_summary(&summary, host_path, &mut report);
    }
    for xml in xml_files(output_dir) {
        read_junit(&xml, output_dir, &mut report);
    }
    report
}

fn read_summary(path: &Path, host_path: &dyn Fn(&str) -> Option<PathBuf>, report: &mut CaseReport) {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        });
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
            match host_path(&log).filter(|p| p.is_file()) {
                Some(host) => {
                    has_logs = true;
                    report.logs.push((name.clone(), host));
                }
                None => {
                    report.notes.push(format!(
                        "testSummary.json: log {log:?} of {name:?} is not a file under a mounted directory; the case is recorded as a failure"
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

fn read_junit(path: &Path, output_dir: &Path, report: &mut CaseReport) {
    let display = path
        .strip_prefix(output_dir)
        .unwrap_or(path)
        .display()
        .to_string();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            report.notes.push(format!("{display}: {error}"));
            return;
        }
    };
    let suites = match junit_parser::from_reader(std::io::BufReader::new(file)) {
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

/// Every `*.xml` file under `dir`, sorted.
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind)
                    if kind.is_file()
                        && path
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("xml")) =>
                {
                    found.push(path);
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
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
        let mut report = collect_cases(dir.path(), &map);
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
        let report = collect_cases(dir.path(), &no_paths);
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
        let report = collect_cases(dir.path(), &no_paths);
        let got: Vec<(&str, bool)> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.passed))
            .collect();
        assert_eq!(got, vec![("math.Add.small", true), ("math.Add.big", false)]);
    }
}
