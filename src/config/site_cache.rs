//! `[site.cache]` and `[site.cache_key]` → [`SiteCacheConfig`] and [`KeyRules`].
//!
//! Field names are checked here (a typo in `targeted_field` would otherwise silently turn the
//! feature off), statuses must be final codes, and the query rules are exclusive: keeping only
//! some parameters and dropping others at once has no single meaning.

use std::time::Duration;

use http::{HeaderName, StatusCode};
use toml::Spanned;

use crate::cache::key::{KeyRules, QueryRule};
use crate::config::SiteCacheConfig;
use crate::config::ctx::Ctx;
use crate::config::error::ConfigError;
use crate::config::file::{
    CacheKeyFile, DEFAULT_MAX_VARIANTS, DEFAULT_STALE_WHEN_DISCONNECTED, MAX_MAX_VARIANTS,
    SiteCacheFile, SpannedList,
};

pub(crate) fn site_cache(
    f: &SiteCacheFile,
    prefix: &str,
    cx: &Ctx<'_>,
) -> Result<SiteCacheConfig, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let targeted_field = match &f.targeted_field {
        Some(v) => Some(field_name(v, &key("targeted_field"), cx)?),
        None => None,
    };
    let tag_header = match &f.tag_header {
        Some(v) => field_name(v, &key("tag_header"), cx)?,
        None => crate::cache::policy::SURROGATE_KEY,
    };
    let max_variants = match &f.max_variants {
        Some(v) if !(1..=MAX_MAX_VARIANTS).contains(v.get_ref()) => {
            let message = format!("must be between 1 and {MAX_MAX_VARIANTS}");
            return Err(cx.invalid(v.span(), &key("max_variants"), message));
        }
        Some(v) => *v.get_ref(),
        None => DEFAULT_MAX_VARIANTS,
    };
    let mut status_ttl = Vec::with_capacity(f.status_ttl.len());
    for (code, ttl) in &f.status_ttl {
        let here = key(&format!("status_ttl.{code}"));
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c) && *c != 206 && *c != 304)
            .and_then(|c| StatusCode::from_u16(c).ok());
        let Some(status) = status else {
            let message = format!(
                "{code:?} is not a status whose responses can be stored \
                 (a final code 200-599 other than 206 and 304)"
            );
            return Err(cx.invalid(ttl.span(), &here, message));
        };
        status_ttl.push((status, ttl.get_ref().0));
    }
    Ok(SiteCacheConfig {
        cdn_cache_control: f.cdn_cache_control.unwrap_or(true),
        targeted_field,
        surrogate_control: f.surrogate_control.unwrap_or(false),
        stale_while_revalidate: f
            .serve_stale_while_revalidate
            .map_or(Duration::ZERO, |d| d.0),
        stale_if_error: f.serve_stale_if_error.map_or(Duration::ZERO, |d| d.0),
        stale_when_disconnected: f
            .serve_stale_when_disconnected
            .map_or(DEFAULT_STALE_WHEN_DISCONNECTED, |d| d.0),
        store_set_cookie: f.store_set_cookie.unwrap_or(false),
        head_to_origin: f.head_to_origin.unwrap_or(false),
        max_variants,
        tag_header,
        status_ttl,
    })
}

/// A header field name as it appears on the wire (RFC 9110 §5.1 token).
fn field_name(v: &Spanned<String>, key: &str, cx: &Ctx<'_>) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(v.get_ref().as_bytes()).map_err(|_| {
        let message = format!("{:?} is not a valid header field name", v.get_ref());
        cx.invalid(v.span(), key, message)
    })
}

pub(crate) fn cache_key(
    f: &CacheKeyFile,
    prefix: &str,
    cx: &Ctx<'_>,
) -> Result<KeyRules, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let names = |list: &SpannedList| -> Vec<String> {
        list.get_ref().iter().map(|n| n.get_ref().clone()).collect()
    };
    let ignore = f.ignore_query.as_ref().filter(|v| *v.get_ref());
    let query = match (ignore, &f.drop_query, &f.only_query) {
        (None, None, None) => QueryRule::Keep,
        (Some(_), None, None) => QueryRule::Ignore,
        (None, Some(drop), None) => QueryRule::Drop(names(drop)),
        (None, None, Some(only)) => QueryRule::Only(names(only)),
        (_, _, Some(only)) => {
            let message = "only_query cannot be combined with ignore_query or drop_query";
            return Err(cx.invalid(only.span(), &key("only_query"), message));
        }
        (Some(_), Some(drop), None) => {
            let message = "drop_query cannot be combined with ignore_query";
            return Err(cx.invalid(drop.span(), &key("drop_query"), message));
        }
    };
    let mut headers = Vec::new();
    for (i, name) in f
        .headers
        .iter()
        .flat_map(|l| l.get_ref().iter())
        .enumerate()
    {
        headers.push(field_name(name, &key(&format!("headers[{i}]")), cx)?);
    }
    let mut cookies = Vec::new();
    for (i, name) in f
        .cookies
        .iter()
        .flat_map(|l| l.get_ref().iter())
        .enumerate()
    {
        let valid = !name.get_ref().is_empty()
            && name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid {
            let message = format!("{:?} is not a valid cookie name", name.get_ref());
            return Err(cx.invalid(name.span(), &key(&format!("cookies[{i}]")), message));
        }
        cookies.push(name.get_ref().clone());
    }
    Ok(KeyRules {
        query,
        sort_query: f.sort_query.unwrap_or(false),
        headers,
        cookies,
    })
}
