//! The per-user request rate limit (`RATE_LIMIT`): a GCRA limiter per
//! authenticated user (governor), in this instance's memory, and the
//! `RateLimit-Policy` / `RateLimit` header values
//! (draft-ietf-httpapi-ratelimit-headers) that tell the client where it
//! stands.
//!
//! A quota of `q` requests per `w` is a bucket of `q` that refills one
//! request every `w / q`: a client may spend its whole quota at once, then
//! one request per `w / q`.

use std::{fmt, num::NonZeroU32, str::FromStr, time::Duration};

use poem::http::HeaderValue;

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
};

/// `RATE_LIMIT`: `q` requests per window `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub quota: NonZeroU32,
    pub window: Duration,
}

impl RateLimit {
    /// `600/min`, the contract's default.
    pub const DEFAULT: Self = Self {
        quota: match NonZeroU32::new(600) {
            Some(quota) => quota,
            None => NonZeroU32::MIN,
        },
        window: Duration::from_secs(60),
    };
}

impl FromStr for RateLimit {
    type Err = String;

    /// `600/min`, `10/s`, `5000/h`, or `100/30s` (a humantime window).
    fn from_str(value: &str) -> Result<Self, String> {
        let usage = "expected `<requests>/<window>` such as `600/min`, or `off`";
        let (quota, window) = value.split_once('/').ok_or(usage)?;
        let quota = quota
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("{usage}: the request count must be a positive integer"))?;
        let window = match window.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|e| format!("{usage}: {e}"))?,
        };
        if window < Duration::from_secs(1) || window > Duration::from_secs(24 * 3600) {
            return Err(format!("{usage}: the window must be 1s to 24h"));
        }
        Ok(Self { quota, window })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.quota,
            humantime::format_duration(self.window)
        )
    }
}

/// Where a user stands after a request was counted (or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the whole quota is available again; when nothing is
    /// left, until the next request is.
    pub reset_secs: u64,
}

/// The limiter of one instance.
pub struct RateLimiter {
    limit: RateLimit,
    users: DefaultKeyedRateLimiter<String, StateInformationMiddleware>,
    clock: DefaultClock,
    /// `RateLimit-Policy`, the same on every response.
    policy: HeaderValue,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::with_period(limit.window / limit.quota.get())
            .unwrap_or_else(|| Quota::per_second(limit.quota))
            .allow_burst(limit.quota);
        Self {
            limit,
            users: governor::RateLimiter::keyed(quota).with_middleware(),
            clock: DefaultClock::default(),
            policy: header_value(format!(
                "\"default\";q={};w={}",
                limit.quota,
                limit.window.as_secs()
            )),
        }
    }

    /// The `RateLimit-Policy` header value.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// Counts a request of `user_id`: `Ok` with what is left, or `Err` with
    /// when to retry (the request must be refused).
    pub fn check(&self, user_id: &str) -> Result<Standing, Standing> {
        // Owned keys: a lookup by `&str` is not offered by the keyed store.
        let key = user_id.to_owned();
        let refill = self.limit.window / self.limit.quota.get();
        match self.users.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let reset = if remaining == 0 {
                    refill
                } else {
                    refill * (self.limit.quota.get() - remaining)
                };
                Ok(Standing {
                    remaining,
                    reset_secs: ceil_secs(reset),
                })
            }
            Err(not_until) => Err(Standing {
                remaining: 0,
                reset_secs: ceil_secs(not_until.wait_time_from(self.clock.now())).max(1),
            }),
        }
    }

    /// Forgets users whose quota has refilled completely, whose state
    /// says nothing a fresh one would not.
    pub fn forget_idle(&self) {
        self.users.retain_recent();
        self.users.shrink_to_fit();
    }
}

impl Standing {
    /// The `RateLimit` header value.
    pub fn header(&self) -> HeaderValue {
        header_value(format!(
            "\"default\";r={};t={}",
            self.remaining, self.reset_secs
        ))
    }
}

/// Quotes, digits and ASCII letters only: always a valid header value.
fn header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_in_the_forms_the_readme_gives() {
        let per = |quota, secs| RateLimit {
            quota: NonZeroU32::new(quota).unwrap(),
            window: Duration::from_secs(secs),
        };
        assert_eq!("600/min".parse(), Ok(per(600, 60)));
        assert_eq!(RateLimit::DEFAULT, per(600, 60));
        assert_eq!("10/s".parse(), Ok(per(10, 1)));
        assert_eq!("5000/h".parse(), Ok(per(5000, 3600)));
        assert_eq!("100/30s".parse(), Ok(per(100, 30)));
        for bad in [
            "",
            "600",
            "0/min",
            "-1/min",
            "600/fortnight",
            "600/0s",
            "10/2d",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_quota_is_spent_then_refused_with_when_to_retry() {
        let limiter = RateLimiter::new("3/3s".parse().unwrap());
        assert_eq!(limiter.policy(), "\"default\";q=3;w=3");
        let standing = |remaining, reset_secs| Standing {
            remaining,
            reset_secs,
        };
        assert_eq!(limiter.check("alice"), Ok(standing(2, 1)));
        assert_eq!(limiter.check("alice"), Ok(standing(1, 2)));
        assert_eq!(limiter.check("alice"), Ok(standing(0, 1)));
        assert_eq!(limiter.check("alice"), Err(standing(0, 1)));
        assert_eq!(limiter.check("bob"), Ok(standing(2, 1)));
        assert_eq!(standing(0, 1).header(), "\"default\";r=0;t=1");
    }
}
