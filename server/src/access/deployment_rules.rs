//! Who may use a deployment: its terminal is a root shell, so attaching to it and shutting it
//! down are operator actions (the route table), and beyond that only the person who booted
//! it or an admin may, whatever their other roles. With `auth.mode: none` nobody is
//! authenticated and anyone may. A deployment booted while nobody was authenticated has no
//! booter: only admins may use it once a mode is set.

use super::RequestCaller;
use test_looper_auth::{AuthMode, Caller, Denied, Role};
use test_looper_core::scheduling::DeploymentOwner;

/// The booter to record for a deployment `who` boots.
pub fn owner_of(who: &RequestCaller) -> Option<DeploymentOwner> {
    let login = match &who.caller {
        Caller::Anonymous => return None,
        Caller::Session(user) => user.identity.login.clone(),
        Caller::Token(token) => token.login.clone(),
    };
    Some(DeploymentOwner {
        who: who.caller.who()?,
        login,
    })
}

/// Whether `who` may attach to or shut down a deployment booted by `booted_by`.
pub fn may_control(
    mode: AuthMode,
    who: &RequestCaller,
    booted_by: Option<&DeploymentOwner>,
) -> Result<(), Denied> {
    if mode == AuthMode::None {
        return Ok(());
    }
    if who.caller.role() == Some(Role::Admin) {
        return Ok(());
    }
    let mine = match (who.caller.who(), booted_by) {
        (Some(caller), Some(owner)) => caller == owner.who,
        _ => false,
    };
    if mine {
        Ok(())
    } else if who.caller.role().is_none() {
        Err(Denied::Unauthenticated)
    } else {
        Err(Denied::Forbidden {
            needed: Role::Admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use test_looper_auth::{CallerKind, TokenCaller};

    fn token(who: &str, role: Role) -> RequestCaller {
        RequestCaller {
            caller: Caller::Token(TokenCaller {
                kind: CallerKind::StaticToken,
                who: who.into(),
                login: who.into(),
                token_id: None,
                token_name: who.into(),
                role,
            }),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    #[test]
    fn only_the_booter_or_an_admin_controls_a_deployment() {
        let alice = token("static:alice", Role::Operator);
        let bob = token("static:bob", Role::Operator);
        let admin = token("static:root", Role::Admin);
        let owner = owner_of(&alice).unwrap();
        assert_eq!(owner.who, "static:alice");
        for mode in [AuthMode::Write, AuthMode::Full] {
            assert_eq!(may_control(mode, &alice, Some(&owner)), Ok(()));
            assert_eq!(
                may_control(mode, &bob, Some(&owner)),
                Err(Denied::Forbidden {
                    needed: Role::Admin
                })
            );
            assert_eq!(may_control(mode, &admin, Some(&owner)), Ok(()));
            assert!(may_control(mode, &alice, None).is_err());
            assert_eq!(may_control(mode, &admin, None), Ok(()));
        }
        assert_eq!(may_control(AuthMode::None, &bob, Some(&owner)), Ok(()));
    }
}
