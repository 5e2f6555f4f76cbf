//! The mode policy as a table: every (mode, access, caller) combination, written out.

use test_looper_auth::{authorize, required_role, Access, AuthMode, Denied, Role};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ok,
    E401,
    E403,
}
use Want::*;

/// mode, access, then the answer for: anonymous, viewer, operator, admin.
const TABLE: [(AuthMode, Access, [Want; 4]); 9] = [
    (AuthMode::None, Access::Read, [Ok, Ok, Ok, Ok]),
    (AuthMode::None, Access::Act, [Ok, Ok, Ok, Ok]),
    (AuthMode::None, Access::Admin, [Ok, Ok, Ok, Ok]),
    (AuthMode::Write, Access::Read, [Ok, Ok, Ok, Ok]),
    (AuthMode::Write, Access::Act, [E401, E403, Ok, Ok]),
    (AuthMode::Write, Access::Admin, [E401, E403, E403, Ok]),
    (AuthMode::Full, Access::Read, [E401, Ok, Ok, Ok]),
    (AuthMode::Full, Access::Act, [E401, E403, Ok, Ok]),
    (AuthMode::Full, Access::Admin, [E401, E403, E403, Ok]),
];

const CALLERS: [Option<Role>; 4] = [
    None,
    Some(Role::Viewer),
    Some(Role::Operator),
    Some(Role::Admin),
];

#[test]
fn every_mode_access_and_role() {
    let mut seen = 0;
    for mode in [AuthMode::None, AuthMode::Write, AuthMode::Full] {
        for access in Access::ALL {
            let (_, _, wants) = TABLE
                .iter()
                .find(|(m, a, _)| *m == mode && *a == access)
                .unwrap_or_else(|| panic!("no row for {mode:?} {access:?}"));
            for (caller, want) in CALLERS.iter().zip(wants) {
                let got = match authorize(mode, *caller, access) {
                    Result::Ok(()) => Ok,
                    Err(Denied::Unauthenticated) => E401,
                    Err(Denied::Forbidden { needed }) => {
                        assert_eq!(Some(needed), required_role(mode, access));
                        E403
                    }
                };
                assert_eq!(got, *want, "{mode:?} {access:?} {caller:?}");
                let status = authorize(mode, *caller, access).err().map(Denied::status);
                assert_eq!(
                    status,
                    match want {
                        Ok => None,
                        E401 => Some(401),
                        E403 => Some(403),
                    }
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 36);
}

#[test]
fn required_roles() {
    assert_eq!(required_role(AuthMode::None, Access::Admin), None);
    assert_eq!(required_role(AuthMode::Write, Access::Read), None);
    assert_eq!(
        required_role(AuthMode::Write, Access::Act),
        Some(Role::Operator)
    );
    assert_eq!(
        required_role(AuthMode::Full, Access::Read),
        Some(Role::Viewer)
    );
    assert_eq!(
        required_role(AuthMode::Full, Access::Admin),
        Some(Role::Admin)
    );
}
