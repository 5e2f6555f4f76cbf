//! Rate limits per client and [`Category`] (login, webhook, action), with governor's keyed
//! GCRA limiters. Pure and in memory (one per server process); tests drive it with
//! governor's fake clock.

use governor::clock::{Clock, DefaultClock, FakeRelativeClock};
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// What a limited call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Starting or finishing a login, and bearer-token failures.
    Login,
    /// Webhooks from source control.
    Webhook,
    /// State-changing calls (operator and admin actions).
    Action,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Login, Category::Webhook, Category::Action];
}

/// One category's quota: `per_minute` calls on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub per_minute: u32,
    pub burst: u32,
}

/// `auth.rate_limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default = "RateLimitConfig::default_login")]
    pub login: QuotaConfig,
    #[serde(default = "RateLimitConfig::default_webhook")]
    pub webhook: QuotaConfig,
    #[serde(default = "RateLimitConfig::default_action")]
    pub action: QuotaConfig,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login: Self::default_login(),
            webhook: Self::default_webhook(),
            action: Self::default_action(),
        }
    }
}

impl RateLimitConfig {
    fn default_login() -> QuotaConfig {
        QuotaConfig {
            per_minute: 20,
            burst: 10,
        }
    }

    fn default_webhook() -> QuotaConfig {
        QuotaConfig {
            per_minute: 600,
            burst: 100,
        }
    }

    fn default_action() -> QuotaConfig {
        QuotaConfig {
            per_minute: 120,
            burst: 30,
        }
    }

    pub fn quota(&self, category: Category) -> QuotaConfig {
        match category {
            Category::Login => self.login,
            Category::Webhook => self.webhook,
            Category::Action => self.action,
        }
    }

    pub(crate) fn validate(&self, key: &str, error: &mut dyn FnMut(String, String)) {
        for (name, quota) in [
            ("login", self.login),
            ("webhook", self.webhook),
            ("action", self.action),
        ] {
            if quota.per_minute == 0 || quota.burst == 0 {
                error(
                    format!("{key}.{name}"),
                    "per_minute and burst must both be at least 1".into(),
                );
            }
        }
    }
}

fn quota(config: QuotaConfig) -> Quota {
    let per_minute = config.per_minute.max(1);
    let period = Duration::from_secs(60) / per_minute;
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("non-zero period")
        .allow_burst(NonZeroU32::new(config.burst.max(1)).expect("at least 1"))
}

/// A refused call: try again after `retry_after` (send it as `Retry-After`, rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: {category:?}, retry after {retry_after:?}")]
pub struct Limited {
    pub category: Category,
    pub retry_after: Duration,
}

type Keyed<C> = governor::RateLimiter<
    String,
    DashMapStateStore<String>,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

/// One keyed limiter per category.
pub struct RateLimiter<C: Clock = DefaultClock> {
    clock: C,
    login: Keyed<C>,
    webhook: Keyed<C>,
    action: Keyed<C>,
}

impl RateLimiter<DefaultClock> {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl RateLimiter<FakeRelativeClock> {
    /// A limiter on a clock that only moves when told ([`FakeRelativeClock::advance`]).
    pub fn fake(config: &RateLimitConfig) -> (Self, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Self::with_clock(config, clock.clone()), clock)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        let make =
            |category| Keyed::dashmap_with_clock(quota(config.quota(category)), clock.clone());
        Self {
            login: make(Category::Login),
            webhook: make(Category::Webhook),
            action: make(Category::Action),
            clock,
        }
    }

    fn limiter(&self, category: Category) -> &Keyed<C> {
        match category {
            Category::Login => &self.login,
            Category::Webhook => &self.webhook,
            Category::Action => &self.action,
        }
    }

    /// Counts one call of `category` by `client` (see [`client_key`]); `Err` when over quota.
    pub fn check(&self, category: Category, client: &str) -> Result<(), Limited> {
        self.limiter(category)
            .check_key(&client.to_string())
            .map_err(|not_until| Limited {
                category,
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Forgets clients whose quota has fully refilled; call it every minute or so, or the
    /// maps grow with every client ever seen.
    pub fn retain_recent(&self) {
        for category in Category::ALL {
            self.limiter(category).retain_recent();
        }
    }

    /// How many clients are tracked in `category`.
    pub fn tracked(&self, category: Category) -> usize {
        self.limiter(category).len()
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host usually owns a whole
/// /64, so keying by full address would let it rotate around the limit).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitConfig {
        RateLimitConfig {
            login: QuotaConfig {
                per_minute: 6,
                burst: 3,
            },
            webhook: QuotaConfig {
                per_minute: 60,
                burst: 1,
            },
            action: QuotaConfig {
                per_minute: 60,
                burst: 5,
            },
        }
    }

    #[test]
    fn burst_then_refused_then_refilled_on_the_fake_clock() {
        let (limiter, clock) = RateLimiter::fake(&config());
        for _ in 0..3 {
            limiter.check(Category::Login, "10.0.0.1").unwrap();
        }
        let refused = limiter.check(Category::Login, "10.0.0.1").unwrap_err();
        assert_eq!(refused.category, Category::Login);
        assert_eq!(refused.retry_after, Duration::from_secs(10));
        // Another client and another category are not affected.
        limiter.check(Category::Login, "10.0.0.2").unwrap();
        limiter.check(Category::Action, "10.0.0.1").unwrap();
        clock.advance(Duration::from_secs(9));
        assert!(limiter.check(Category::Login, "10.0.0.1").is_err());
        clock.advance(Duration::from_secs(1));
        limiter.check(Category::Login, "10.0.0.1").unwrap();
        assert!(limiter.check(Category::Login, "10.0.0.1").is_err());
    }

    #[test]
    fn each_category_has_its_own_quota() {
        let (limiter, clock) = RateLimiter::fake(&config());
        limiter.check(Category::Webhook, "a").unwrap();
        assert!(limiter.check(Category::Webhook, "a").is_err());
        for _ in 0..5 {
            limiter.check(Category::Action, "a").unwrap();
        }
        assert!(limiter.check(Category::Action, "a").is_err());
        clock.advance(Duration::from_secs(1));
        limiter.check(Category::Webhook, "a").unwrap();
        limiter.check(Category::Action, "a").unwrap();
    }

    #[test]
    fn retain_recent_forgets_refilled_clients() {
        let (limiter, clock) = RateLimiter::fake(&config());
        limiter.check(Category::Login, "a").unwrap();
        limiter.check(Category::Login, "b").unwrap();
        assert_eq!(limiter.tracked(Category::Login), 2);
        clock.advance(Duration::from_secs(60));
        limiter.retain_recent();
        assert_eq!(limiter.tracked(Category::Login), 0);
    }

    #[test]
    fn client_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
