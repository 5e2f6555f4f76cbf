//! Environments without a root (mixins) stay available, merged and substituted, to other
//! commits that name them in `base: repo/env` (docs/definitions.md#inheritance).

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, Image};

const LIB: &str = "looper_version: 4
environments:
  tools: {base: [], variables: {TOOL: gcc, FLAGS: \"-O2 ${TOOL}\"}, setup_script_contents: \"RUN install ${TOOL}\", test_timeout: 99}
  more: {base: tools, variables: {TOOL: clang}, setup_script_contents: RUN more}
";

const APP: &str = "looper_version: 4
repos: {lib: lib/L}
environments:
  root: {platform: linux, image: {dockerfile_contents: FROM x}, variables: {TOOL: none}}
  env: {base: [root, lib/more]}
  only_mixin: {base: [lib/tools]}
tests:
  t/env: {command: \"run ${TOOL} ${FLAGS}\"}
";

fn world() -> MemorySource {
    let mut source = MemorySource::new().accepting_any_ref();
    source.add_file("lib", "L", "testlooper.yml", LIB);
    source.add_file("app", "A", "testlooper.yml", APP);
    source
}

#[test]
fn rootless_environments_are_listed_merged_and_substituted() {
    let lib = resolve_commit(&CommitRef::new("lib", "L"), &world()).expect("lib resolves");
    assert!(lib.environments.is_empty());
    let more = &lib.derived_environments["more"];
    assert_eq!(more.inheritance, ["tools"]);
    assert_eq!(more.variables["TOOL"], "clang");
    assert_eq!(more.variables["FLAGS"], "-O2 clang");
    assert_eq!(more.defaults.timeout, 99);
    assert_eq!(more.setup_script_contents, "RUN install ${TOOL}\nRUN more");
}

#[test]
fn base_repo_env_may_name_another_commits_mixin() {
    let app = resolve_commit(&CommitRef::new("app", "A"), &world()).expect("app resolves");
    let test = &app.definitions["t/env"];
    let env = &test.environment;
    assert_eq!(env.inheritance, ["more", "root"]);
    // The external mixin arrives already substituted (early binding) and wins over root.
    assert_eq!(env.variables["TOOL"], "clang");
    assert_eq!(test.stages[0].command, "run clang -O2 clang");
    assert_eq!(test.timeout, 99);
    let Image::Docker {
        dockerfile_contents,
        ..
    } = &env.image
    else {
        panic!("docker image expected")
    };
    assert_eq!(dockerfile_contents, "FROM x\nRUN install ${TOOL}\nRUN more");
    // A local environment whose only base is an external mixin is itself rootless.
    assert!(app.derived_environments.contains_key("only_mixin"));
    assert!(!app.environments.contains_key("only_mixin"));
}

#[test]
fn a_missing_external_environment_lists_mixins_too() {
    let mut source = world();
    source.add_file(
        "app",
        "B",
        "testlooper.yml",
        "looper_version: 4\nrepos: {lib: lib/L}\nenvironments: {env: {base: lib/nope}}\n",
    );
    let error = resolve_commit(&CommitRef::new("app", "B"), &source)
        .expect_err("unknown environment")
        .to_string();
    assert!(
        error.contains("Can't find environment nope for lib/L. Available: tools,more"),
        "{error}"
    );
}
