//! The acceptance examples E2–E31 of the original system's specification, numbered as
//! there (E1 is in `discovery`, E26 in `variables`, E17 in `stages`), run through the
//! public API. The behaviour they pin is documented in `docs/definitions.md`.

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{
    check_file, resolve_commit, CommitRef, DefinitionsError, Image, ResolvedCommit,
    ResolvedDependency,
};

const ENV_LINUX: &str =
    "environments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\n";

fn world(files: &[(&str, &str, &str, &str)]) -> MemorySource {
    let mut source = MemorySource::new().accepting_any_ref();
    for (repo, commit, path, text) in files {
        source.add_file(repo, commit, path, text);
    }
    source
}

fn resolve_text(text: &str) -> Result<ResolvedCommit, DefinitionsError> {
    let source = world(&[("app", "C", "testlooper.yml", text)]);
    resolve_commit(&CommitRef::new("app", "C"), &source)
}

fn error_of(text: &str) -> String {
    match resolve_text(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn commands(resolved: &ResolvedCommit, name: &str) -> Vec<String> {
    resolved.definitions[name]
        .stages
        .iter()
        .map(|s| s.command.clone())
        .collect()
}

#[test]
fn e2_version() {
    assert!(error_of("looper_version: 3\n").contains("Can't handle looper version 3"));
    assert!(error_of("repos: {}\n").contains("No looper version specified"));
    assert!(error_of("define: {v: 4}\nin: {looper_version: \"${v}\"}\n").contains("looper version"));
}

#[test]
fn e3_e4_scalars_and_shadowing() {
    let text = format!(
        "define: {{flag: true, n: 10, f: 1.5}}\nin:\n  looper_version: 4\n  {}  tests:\n    t/linux: {{command: \"${{flag}} ${{n}} ${{f}} x${{flag}}\", variables: {{FLAG: yes, N: 010}}}}\n",
        ENV_LINUX.trim_end().to_owned() + "\n"
    );
    let resolved = resolve_text(&text).expect("resolves");
    assert_eq!(commands(&resolved, "t/linux"), ["True 10 1.5 xTrue"]);
    assert_eq!(resolved.definitions["t/linux"].variables["FLAG"], "true");
    assert_eq!(resolved.definitions["t/linux"].variables["N"], "8");
    assert!(
        error_of("looper_version: 4\ntests: {define: {a: 1}, in: {define: {a: 2}, in: {}}}\n")
            .contains("Can't redefine variable a")
    );
}

#[test]
fn e5_cross_product_in_document_order() {
    let text = format!(
        "looper_version: 4\n{ENV_LINUX}tests:\n  foreach: {{name: [t1, t2], env: [e1, e2]}}\n  repeat:\n    ${{name}}/${{env}}: {{environment: linux, command: \"run ${{name}}\"}}\n"
    );
    let resolved = resolve_text(&text).expect("resolves");
    let names: Vec<&String> = resolved.definitions.keys().collect();
    assert_eq!(names, ["t1/e1", "t1/e2", "t2/e1", "t2/e2"]);
    let t = &resolved.definitions["t2/e1"];
    assert_eq!(
        (t.project.as_str(), t.configuration.as_str()),
        ("t2", "linux")
    );
    assert_eq!(commands(&resolved, "t2/e1"), ["run t2"]);
}

#[test]
fn e6_e7_e8_e9_directives() {
    let scalar = format!(
        "looper_version: 4\n{ENV_LINUX}tests:\n  foreach: {{env: linux}}\n  repeat: {{\"t/${{env}}\": {{command: x}}}}\n"
    );
    assert_eq!(
        resolve_text(&scalar).expect("resolves").definitions.len(),
        1
    );
    let empty =
        format!("looper_version: 4\n{ENV_LINUX}tests: {{foreach: [], repeat: {{a: {{}}}}}}\n");
    assert!(resolve_text(&empty)
        .expect("resolves")
        .definitions
        .is_empty());
    let squash =
        format!("looper_version: 4\n{ENV_LINUX}tests:\n  squash: {{a: 1}}\n  over: [{{a: 2}}]\n");
    assert!(error_of(&squash).contains("Can't define a twice when squashing"));
    let twice = format!(
        "looper_version: 4\n{ENV_LINUX}builds: {{merge: [{{a/linux: {{}}}}, {{a/linux: {{}}}}]}}\n"
    );
    assert!(error_of(&twice).contains("produced key a/linux twice"));
    let case = "define: {t: {a: A, b: B}}\nin:\n  looper_version: 4\n  environments: {linux: {platform: linux, image: {dockerfile_contents: x}}}\n  tests: {t/linux: {command: {case: b, in: \"${t}\"}}}\n";
    assert_eq!(
        commands(&resolve_text(case).expect("resolves"), "t/linux"),
        ["B"]
    );
    let missing = case.replace("case: b", "case: c");
    assert!(error_of(&missing).contains("Can't find lookup key 'c'"));
    let structured = "define: {L: [1, 2]}\nin:\n  looper_version: 4\n  tests: {t/linux: {command: \"a ${L}\"}}\n";
    assert!(error_of(structured).contains("Can't replace in-string variable 'L'"));
}

const E10: &str = r#"looper_version: 4
environments:
  root: {platform: linux, image: {dockerfile_contents: "FROM x"},
         variables: {V: root, W: "${V}-w"}, test_stages: [{command: root-pre}],
         test_timeout: 100, test_configuration: rootcfg}
  m1: {base: [], variables: {V: m1}, setup_script_contents: "RUN m1",
       test_stages: [{command: m1-pre}], test_min_cores: 4}
  m2: {base: [], variables: {V: m2}, setup_script_contents: "RUN m2",
       test_stages: [{command: m2-pre}], test_min_cores: 8}
  d12: {base: [root, m1, m2]}
  d21: {base: [root, m2, m1]}
tests:
  t/d12: {command: "echo ${V} ${W}"}
  t/d21: {command: "echo ${V} ${W}"}
  t/mix: {environment: root, mixins: [m1, m2], command: "echo ${V}", timeout: 5}
"#;

#[test]
fn e10_e11_inheritance_and_mixins() {
    let resolved = resolve_text(E10).expect("resolves");
    let d12 = &resolved.environments["d12"];
    assert_eq!(d12.inheritance, ["m2", "m1", "root"]);
    assert_eq!(d12.variables["V"], "m2");
    assert_eq!(d12.variables["W"], "m2-w");
    assert_eq!(
        d12.image,
        Image::Docker {
            dockerfile_contents: "FROM x\nRUN m1\nRUN m2".into(),
            dockerfile: None
        }
    );
    assert_eq!((d12.defaults.min_cores, d12.defaults.timeout), (8, 100));
    let t12 = &resolved.definitions["t/d12"];
    assert_eq!(
        commands(&resolved, "t/d12"),
        ["root-pre", "m1-pre", "m2-pre", "echo m2 m2-w"]
    );
    assert_eq!(
        (t12.timeout, t12.min_cores, t12.configuration.as_str()),
        (100, 8, "rootcfg")
    );
    let t21 = &resolved.definitions["t/d21"];
    assert_eq!(t21.variables["V"], "m1");
    assert_eq!(
        commands(&resolved, "t/d21"),
        ["root-pre", "m2-pre", "m1-pre", "echo m1 m1-w"]
    );
    assert_eq!(t21.min_cores, 4);
    let mix = &resolved.definitions["t/mix"];
    assert_eq!(mix.environment.name, "root");
    assert_eq!(mix.environment.mixins, ["m1", "m2"]);
    assert_eq!(mix.environment.inheritance, ["m2", "m1", "root"]);
    assert_eq!(
        (mix.variables["V"].as_str(), mix.timeout, mix.min_cores),
        ("m2", 5, 8)
    );
    assert!(!resolved.environments.keys().any(|k| k.contains('+')));
}

#[test]
fn e12_test_variables_do_not_reexpand_environment_values() {
    let text = "looper_version: 4\nenvironments:\n  linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}, variables: {A: \"${B}-x\", B: b}}\ntests:\n  foo/test/linux: {command: \"run ${A} ${TEST_INPUTS}\", variables: {B: override}}\n";
    let resolved = resolve_text(text).expect("resolves");
    let t = &resolved.definitions["foo/test/linux"];
    assert_eq!(
        (t.variables["A"].as_str(), t.variables["B"].as_str()),
        ("b-x", "override")
    );
    assert_eq!(
        commands(&resolved, "foo/test/linux"),
        ["run b-x ${TEST_INPUTS}"]
    );
    assert_eq!(
        (t.project.as_str(), t.environment.name.as_str()),
        ("foo", "linux")
    );
}

fn e13_e14_world() -> MemorySource {
    world(&[
        ("libs", "L", "testlooper.yml", "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile: docker/Dockerfile}, variables: {X: \"${Y}\", Y: lib}}}\nbuilds:\n  core/linux: {command: c}\n  single: {environment: linux, command: s}\n"),
        ("libs", "L", "docker/Dockerfile", "FROM lib"),
        ("app", "C", "testlooper.yml", r#"looper_version: 4
repos: {lib: libs/L}
environments:
  linux: {base: lib/linux, variables: {Y: app, KIND: k1}}
builds:
  b/linux: {command: b}
  build/k1: {environment: linux, command: k}
tests:
  t/linux:
    command: "${X}"
    dependencies:
      a: HEAD
      b: HEAD/source/docs
      c: b/linux
      d: HEAD/b/linux
      e: lib
      f: lib/source
      g: lib/core/linux
      h: lib/single
      in_${KIND}: build/${KIND}
"#),
        ("app", "C", "docs/readme", "x"),
    ])
}

#[test]
fn e13_e14_external_environment_and_dependency_forms() {
    let source = e13_e14_world();
    let resolved = resolve_commit(&CommitRef::new("app", "C"), &source).expect("resolves");
    let t = &resolved.definitions["t/linux"];
    assert_eq!(
        (t.variables["X"].as_str(), t.variables["Y"].as_str()),
        ("lib", "app")
    );
    assert_eq!(commands(&resolved, "t/linux"), ["lib"]);
    assert_eq!(t.environment.inheritance, ["linux"]);
    assert!(
        matches!(&t.environment.image, Image::Docker { dockerfile_contents, .. } if dockerfile_contents == "FROM lib")
    );
    let src = |repo: &str, commit: &str, path: &str| ResolvedDependency::Source {
        repo: repo.into(),
        commit: commit.into(),
        path: path.into(),
    };
    assert_eq!(t.dependencies["a"], src("app", "C", ""));
    assert_eq!(t.dependencies["b"], src("app", "C", "docs"));
    assert_eq!(t.dependencies["c"], t.dependencies["d"]);
    assert_eq!(t.dependencies["e"], src("libs", "L", ""));
    assert_eq!(t.dependencies["f"], src("libs", "L", ""));
    let ResolvedDependency::Build { name, hash, .. } = &t.dependencies["g"] else {
        panic!("build expected")
    };
    assert_eq!(name, "core/linux");
    let lib = resolve_commit(&CommitRef::new("libs", "L"), &source).expect("lib resolves");
    assert_eq!(*hash, lib.definitions["core/linux"].hash);
    assert!(
        matches!(&t.dependencies["h"], ResolvedDependency::Build { name, .. } if name == "single")
    );
    assert!(
        matches!(&t.dependencies["in_k1"], ResolvedDependency::Build { name, .. } if name == "build/k1")
    );
    let bad = format!("looper_version: 4\n{ENV_LINUX}tests: {{t/linux: {{command: x, dependencies: {{a: \"${{KIND}}/build\"}}}}}}\n");
    assert!(error_of(&bad).contains("First part of dependencies can't have a substitution"));
    let env_dep = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: x}, dependencies: {a: build/linux}}}\ntests: {t/linux: {command: x}}\n";
    assert!(error_of(env_dep).contains("Environment dependencies must reference a named repo"));
    assert!(error_of(&env_dep.replace("build/linux", "HEAD/build"))
        .contains("Malformed repo dependency"));
}

#[test]
fn e15_e16_artifacts_and_masking() {
    let text = format!(
        "looper_version: 4\n{ENV_LINUX}builds:\n  staged:\n    environment: linux\n    stages:\n      - {{command: s1, artifacts: [{{name: headers}}, {{name: docs}}]}}\n      - {{command: s2, artifacts: [{{name: libs, include_patterns: \"*.so\"}}]}}\n  use/linux: {{command: x, dependencies: {{h: staged/headers, l: staged/libs}}}}\n"
    );
    let resolved = resolve_text(&text).expect("resolves");
    let staged = resolved.definitions["staged"].hash.clone();
    assert!(
        matches!(&resolved.definitions["use/linux"].dependencies["h"],
        ResolvedDependency::Build { name, hash, artifact, .. } if name == "staged" && *hash == staged && artifact == "headers")
    );
    let bad = format!("{text}  bad/linux: {{command: x, dependencies: {{h: staged}}}}\n");
    let message = error_of(&bad);
    assert!(
        message.contains(
            "Can't resolve artifact '' in test staged. Valid are [\"docs\", \"headers\", \"libs\"]"
        ),
        "{message}"
    );
    assert!(message.contains("While processing test bad/linux"));
    let masked = format!("looper_version: 4\n{ENV_LINUX}builds:\n  b: {{environment: linux, command: x}}\n  b/linux: {{command: y}}\ntests:\n  t/linux: {{command: z, dependencies: {{d: b/linux}}}}\n");
    assert!(error_of(&masked).contains("Can't resolve artifact 'linux' in test b"));
    let twice = format!("looper_version: 4\n{ENV_LINUX}builds:\n  x/linux: {{stages: [{{artifacts: [{{name: x}}]}}, {{artifacts: [{{name: x}}]}}]}}\n");
    assert!(error_of(&twice).contains("defined artifact 'x' twice"));
    let naked = format!("looper_version: 4\n{ENV_LINUX}builds:\n  x/linux: {{command: c, stages: [{{artifacts: [{{name: a}}]}}]}}\n");
    assert!(
        error_of(&naked).contains("can only define the unnamed artifact if it defines no others")
    );
}

#[test]
fn e18_prioritize_and_reenabling() {
    let text = format!("looper_version: 4\n{ENV_LINUX}builds:\n  b/linux: {{command: a, disabled: true}}\n  b2/linux: {{command: a}}\n  b3/linux: {{command: a}}\ntests:\n  t/linux: {{command: c, dependencies: {{d: b/linux}}}}\n  u/linux: {{command: c, dependencies: {{d: b3/linux}}}}\nprioritize: [\"t/*\"]\n");
    let resolved = resolve_text(&text).expect("resolves");
    let disabled = |n: &str| resolved.definitions[n].disabled;
    assert!(!disabled("b/linux") && disabled("b2/linux") && disabled("b3/linux"));
    assert!(!disabled("t/linux") && disabled("u/linux"));
    let plain = text
        .replace(", disabled: true", "")
        .replace("prioritize: [\"t/*\"]\n", "");
    let plain = resolve_text(&plain).expect("resolves");
    assert_eq!(
        plain.definitions["b/linux"].hash,
        resolved.definitions["b/linux"].hash
    );
}

#[test]
fn e19_e20_e21_includes() {
    let env_yml = "looper_version: 4\nenvironments:\n  ${name}: {platform: linux, image: {dockerfile: Dockerfile}, variables: {WHO: \"${who}\"}, dependencies: {src: HEAD}}\n";
    let root = "looper_version: 4\nrepos: {shared: shared/L}\nincludes:\n  - {path: shared/defs/env.yml, variables: {name: e1, who: one}}\n  - {foreach: {name: [e2]}, repeat: [shared/defs/env.yml]}\n";
    let source = world(&[
        ("shared", "L", "testlooper.yml", "looper_version: 4\n"),
        ("shared", "L", "defs/env.yml", env_yml),
        ("app", "C", "ci/testDefinitions.yml", root),
        ("app", "C", "Dockerfile", "FROM app"),
    ]);
    let resolved = resolve_commit(&CommitRef::new("app", "C"), &source).expect("resolves");
    assert_eq!(resolved.environments["e1"].variables["WHO"], "one");
    assert_eq!(resolved.environments["e2"].variables["WHO"], "${who}");
    for env in ["e1", "e2"] {
        let e = &resolved.environments[env];
        assert_eq!(
            e.dependencies["src"],
            ResolvedDependency::Source {
                repo: "app".into(),
                commit: "C".into(),
                path: String::new()
            }
        );
        assert!(
            matches!(&e.image, Image::Docker { dockerfile_contents, .. } if dockerfile_contents == "FROM app")
        );
    }
    let dup = world(&[
        ("app", "C", "testlooper.yml", "looper_version: 4\nincludes: [./a.yml, ./b.yml]\n"),
        ("app", "C", "a.yml", "looper_version: 4\nenvironments: {e: {platform: linux, image: {dockerfile_contents: x}}}\n"),
        ("app", "C", "b.yml", "looper_version: 4\nenvironments: {e: {platform: linux, image: {dockerfile_contents: x}}}\n"),
    ]);
    let err = resolve_commit(&CommitRef::new("app", "C"), &dup)
        .unwrap_err()
        .to_string();
    assert!(err.contains("can't be defined a second time"), "{err}");
    let bad_prefix = "looper_version: 4\nincludes: [nothing/x.yml]\n";
    assert!(error_of(bad_prefix).contains("should start with a repo, a '/', '.', or '..'"));
    let recursive = world(&[
        (
            "app",
            "C",
            "testlooper.yml",
            "looper_version: 4\nincludes: [./a.yml]\n",
        ),
        (
            "app",
            "C",
            "a.yml",
            "looper_version: 4\nincludes: [./b.yml]\n",
        ),
        (
            "app",
            "C",
            "b.yml",
            "looper_version: 4\nincludes: [./a.yml]\n",
        ),
    ]);
    assert!(resolve_commit(&CommitRef::new("app", "C"), &recursive)
        .expect("terminates")
        .definitions
        .is_empty());
    let growing = world(&[
        (
            "app",
            "C",
            "testlooper.yml",
            "looper_version: 4\nincludes: [{path: ./a.yml, variables: {var: x}}]\n",
        ),
        (
            "app",
            "C",
            "a.yml",
            "looper_version: 4\nincludes: [{path: ./a.yml, variables: {var: \"v_${var}\"}}]\n",
        ),
    ]);
    let err = resolve_commit(&CommitRef::new("app", "C"), &growing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Exceeded the maximum number of file includes: 128"),
        "{err}"
    );
}

#[test]
fn e22_e23_repo_imports_and_placeholder() {
    let source = world(&[
        ("base", "A", "testlooper.yml", "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: x}, variables: {WHERE: base}}}\nbuilds: {lib/linux: {command: l}}\n"),
        ("mid", "B", "testlooper.yml", "looper_version: 4\nrepos: {base: {reference: base/A, branch: master, auto: true}}\n"),
        ("top", "C", "testlooper.yml", "looper_version: 4\nrepos:\n  mid: mid/B\n  base_via_mid: {import: mid/base}\n  alias: {import: base_via_mid}\nenvironments: {linux: {base: base_via_mid/linux}}\nbuilds: {app/linux: {command: x, dependencies: {lib: alias/lib/linux}}}\n"),
        ("cyc", "D", "testlooper.yml", "looper_version: 4\nrepos: {a: {import: b}, b: {import: a}}\n"),
        ("ph", "E", "testlooper.yml", &format!("looper_version: 4\nrepos: {{p: {{reference: mid/HEAD, branch: master}}, q: {{import: p/base}}}}\n{ENV_LINUX}tests: {{t/linux: {{command: x}}}}\n")),
    ]);
    let top = resolve_commit(&CommitRef::new("top", "C"), &source).expect("resolves");
    let app = &top.definitions["app/linux"];
    assert_eq!(app.variables["WHERE"], "base");
    assert!(
        matches!(&app.dependencies["lib"], ResolvedDependency::Build { name, .. } if name == "lib/linux")
    );
    assert_eq!(
        top.repos["base_via_mid"].reference(),
        &CommitRef::new("base", "A")
    );
    let err = resolve_commit(&CommitRef::new("cyc", "D"), &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Circular repo-refs"), "{err}");
    let ph = resolve_commit(&CommitRef::new("ph", "E"), &source).expect("no error");
    assert!(ph.head_placeholder && ph.definitions.is_empty() && ph.environments.is_empty());
    assert_eq!(ph.repos.keys().collect::<Vec<_>>(), ["p"]);
}

#[test]
fn e24_e25_cycles_and_environment_errors() {
    let circular = format!("looper_version: 4\n{ENV_LINUX}builds:\n  build1/linux: {{command: x, dependencies: {{a: build2/linux}}}}\n  build2/linux: {{command: x, dependencies: {{a: build1/linux}}}}\n");
    assert!(error_of(&circular).contains("Circular test dependency found:"));
    assert!(error_of("looper_version: 4\nenvironments: {a: {base: b}, b: {base: a}}\ntests: {t/a: {command: x}}\n")
        .contains("Circular dependencies"));
    let two_roots = "looper_version: 4\nenvironments:\n  linux: {platform: linux, image: {dockerfile_contents: x}}\n  linux2: {platform: linux, image: {dockerfile_contents: y}}\n  both: {base: [linux, linux2]}\n";
    assert!(error_of(two_roots).contains("Can't depend on two different non-import environments"));
    let missing = format!("looper_version: 4\n{ENV_LINUX}tests: {{t/windows: {{command: x}}}}\n");
    assert!(error_of(&missing).contains("Can't find environment windows (referenced by t/windows)"));
    let mixin = "looper_version: 4\nenvironments:\n  linux: {platform: linux, image: {dockerfile_contents: x}}\n  mix: {variables: {A: b}}\ntests: {t/linux: {mixins: [mix], command: \"${A}\"}}\n";
    assert_eq!(
        commands(&resolve_text(mixin).expect("valid mixin"), "t/linux"),
        ["b"]
    );
    let rootless = "looper_version: 4\nenvironments: {m: {base: []}}\ntests: {t/m: {command: x}}\n";
    assert!(error_of(rootless).contains("has no root"));
}

#[test]
fn e26_reserved_variable_names_at_parse_time() {
    let text = format!("looper_version: 4\n{ENV_LINUX}tests: {{t/linux: {{command: x, variables: {{TEST_INPUTS: mine}}}}}}\n");
    assert!(error_of(&text).contains("reserved variable name"));
}

#[test]
fn e27_e28_duplicates_and_strict_schema() {
    let dup = format!("looper_version: 4\n{ENV_LINUX}builds: {{x/linux: {{command: b}}}}\ntests: {{x/linux: {{command: t}}}}\n");
    assert!(error_of(&dup).contains("defined twice"));
    let list_dup = format!("looper_version: 4\n{ENV_LINUX}builds: [{{x/linux: {{command: first}}}}, {{x/linux: {{command: second}}}}]\n");
    assert!(error_of(&list_dup).contains("defined twice"));
    let unknown = format!(
        "looper_version: 4\n{ENV_LINUX}tests: {{t/linux: {{command: c, max_retries: 3}}}}\n"
    );
    let message = error_of(&unknown);
    assert!(
        message.contains("max_retries") && message.contains("tests.\"t/linux\".max_retries"),
        "{message}"
    );
    let timeout = format!(
        "looper_version: 4\n{ENV_LINUX}tests: {{t/linux: {{command: c, timeout: \"100\"}}}}\n"
    );
    assert!(error_of(&timeout).contains("field timeout needs a"));
    assert!(error_of("looper_version: 4\nenvironments: {linux: {platform: Linux, image: {dockerfile_contents: x}}}\n")
        .contains("Platform has no subtype Linux"));
    assert!(error_of("looper_version: 4\nrepos: {lib: lib/L}\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: x}}}\ntests: {lib/thing: {environment: linux}}\n")
        .contains("because lib is already a repo name"));
    assert!(error_of("looper_version: 4\nrepos: {source: x/L}\n").contains("reserved name"));
    assert!(error_of("looper_version: 4\nrepos: {p: justaname}\n")
        .contains("Improperly formed repo definition"));
}

#[test]
fn e29_pending_not_untestable() {
    let text = format!("looper_version: 4\nrepos: {{lib: nolibs/L}}\n{ENV_LINUX}builds: {{b/linux: {{command: x, dependencies: {{l: lib/x/linux}}}}}}\n");
    assert_eq!(
        resolve_text(&text).unwrap_err(),
        DefinitionsError::Pending {
            repo: "nolibs".into(),
            commit: None
        }
    );
    let source = world(&[
        (
            "app",
            "C",
            "testlooper.yml",
            &text.replace("nolibs/L", "libs/L2"),
        ),
        ("libs", "L", "testlooper.yml", "looper_version: 4\n"),
    ]);
    assert_eq!(
        resolve_commit(&CommitRef::new("app", "C"), &source).unwrap_err(),
        DefinitionsError::Pending {
            repo: "libs".into(),
            commit: Some("L2".into())
        }
    );
}

#[test]
fn e30_identity() {
    let text = format!("looper_version: 4\n{ENV_LINUX}builds:\n  nosrc/linux: {{command: a}}\n  withsrc/linux: {{command: a, dependencies: {{src: HEAD}}}}\n  dep/linux: {{command: a, dependencies: {{w: withsrc/linux}}}}\n  withsub/linux: {{command: a, dependencies: {{s: HEAD/source/lib}}}}\n");
    let mut source = world(&[
        ("r", "A", "testlooper.yml", &text),
        ("r", "A", "lib/x", "1"),
        ("r", "B", "testlooper.yml", &text),
        ("r", "B", "lib/x", "1"),
    ]);
    source.set_last_touch("r", "B", "lib", "A");
    let a = resolve_commit(&CommitRef::new("r", "A"), &source).expect("A");
    let b = resolve_commit(&CommitRef::new("r", "B"), &source).expect("B");
    let h = |c: &ResolvedCommit, n: &str| c.definitions[n].hash.clone();
    assert_eq!(h(&a, "nosrc/linux"), h(&b, "nosrc/linux"));
    assert_ne!(h(&a, "withsrc/linux"), h(&b, "withsrc/linux"));
    assert_ne!(h(&a, "dep/linux"), h(&b, "dep/linux"));
    assert_eq!(h(&a, "withsub/linux"), h(&b, "withsub/linux"));
    let json = serde_json::to_string(&serde_json::json!({
        "looper_version": 4,
        "environments": {"linux": {"platform": "linux", "image": {"dockerfile_contents": "FROM x"}}},
        "builds": {"nosrc/linux": {"command": "a"}}
    }))
    .expect("json");
    let j = resolve_commit(
        &CommitRef::new("j", "J"),
        &world(&[("j", "J", "testDefinitions.json", &json)]),
    )
    .expect("json");
    assert_eq!(h(&j, "nosrc/linux"), h(&a, "nosrc/linux"));
}

#[test]
fn e31_deployments_resolve() {
    let text = format!("looper_version: 4\n{ENV_LINUX}deployments: {{d/linux: {{portExpose: {{http: 80}}}}}}\ntests: {{t/linux: {{command: x}}}}\n");
    let resolved = resolve_text(&text).expect("resolves");
    let d = &resolved.definitions["d/linux"];
    assert_eq!(
        (
            d.environment.name.as_str(),
            d.stages.len(),
            d.port_expose["http"]
        ),
        ("linux", 0, 80)
    );
    assert!(resolved.definitions.contains_key("t/linux"));
}

#[test]
fn errors_carry_file_path_and_position() {
    let text = format!("looper_version: 4\n{ENV_LINUX}tests:\n  foo/linux:\n    command: x\n    dependencies:\n      src: nothing/here/at/all\n");
    match resolve_text(&text).unwrap_err() {
        DefinitionsError::Invalid { location, .. } => {
            assert_eq!(
                location.file.as_ref().map(|f| f.path.as_str()),
                Some("testlooper.yml")
            );
            assert!(
                location.document_path.starts_with("tests.\"foo/linux\""),
                "{}",
                location.document_path
            );
            assert!(location.line.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(check_file("looper_version: 4\ntests: [1, 2\n", "testlooper.yml").is_err());
}
