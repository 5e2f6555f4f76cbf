//! Deliberate differences from the original TestLooper, by conformance case id, with the
//! reason (summarised in docs/definitions.md#differences-from-the-original). The
//! conformance test (`conformance.rs`) includes this file; every case not listed here must
//! match the recorded behaviour.

/// `(case id, reason)`.
pub const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "test_definitions_test.environment_yaml_file",
        "the YAML repeats the top-level key 'environments'; PyYAML silently keeps the last one, we reject duplicate keys (silent overwrites are errors)",
    ),
    (
        "captured.TestManagerTests.test_manager_branch_creation_from_template.repo6.c0",
        "the definitions file is empty: the original crashes (TypeError), we treat it as 'no tests'",
    ),
    (
        "captured.TestManagerTests.test_manager_branch_creation_from_template.repo6.c1",
        "the definitions file is empty: the original crashes (TypeError), we treat it as 'no tests'",
    ),
    (
        "captured.TestManagerIncludeSemanticsTests.test_bad_include_preserves_pins.repo0.c0",
        "the recorded definitions file has no content (null); the original crashes reading it, we see no definitions file (no tests)",
    ),
    (
        "captured.TestManagerIncludeSemanticsTests.test_bad_include_preserves_pins.repo0.c1",
        "the recorded definitions file has no content (null); the original crashes reading it, we see no definitions file (no tests)",
    ),
];
