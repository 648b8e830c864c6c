//! `compress`, `compress_types`, `compress_min_size` and `compress_levels` of a `[[site]]` →
//! the site's [`Rules`].
//!
//! Off unless `compress` names a coding. A coding named twice, a type that is not a media
//! type pattern, and a level outside the coding's range are errors: each would otherwise
//! silently do less than the operator wrote.

use toml::Spanned;

use crate::cache::encoding::{Coding, Levels, MediaPattern, Rules, default_types};
use crate::config::ctx::Ctx;
use crate::config::error::ConfigError;
use crate::config::file::{CompressLevelsFile, SiteFile};

/// Below this a coding's framing eats most of what it saves.
pub(crate) const DEFAULT_MIN_SIZE: u64 = 1024;
/// Above this a body is served as it is: one compression of it would hold a pool thread (and
/// its memory) for long. JavaScript and JSON bundles of several MiB are compressed.
pub(crate) const DEFAULT_MAX_SIZE: u64 = 16 << 20;

pub(crate) fn compress(
    f: &SiteFile,
    prefix: &str,
    cx: &Ctx<'_>,
) -> Result<Option<Rules>, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let Some(list) = &f.compress else {
        if let Some(types) = &f.compress_types {
            let message = "has no effect without compress (the codings to offer)";
            return Err(cx.invalid(types.span(), &key("compress_types"), message));
        }
        return Ok(None);
    };
    let mut codings = Vec::new();
    for (i, name) in list.get_ref().iter().enumerate() {
        let here = key(&format!("compress[{i}]"));
        let Some(coding) = Coding::parse(name.get_ref().as_bytes())
            .filter(|c| c.token().eq_ignore_ascii_case(name.get_ref()))
        else {
            let message = format!(
                "{:?} is not a coding Outpost applies (br, zstd, gzip)",
                name.get_ref()
            );
            return Err(cx.invalid(name.span(), &here, message));
        };
        if codings.contains(&coding) {
            let message = format!("{:?} is listed twice", coding.token());
            return Err(cx.invalid(name.span(), &here, message));
        }
        codings.push(coding);
    }
    if codings.is_empty() {
        return Ok(None);
    }
    let types = match &f.compress_types {
        None => default_types(),
        Some(list) => {
            let mut types = Vec::new();
            for (i, text) in list.get_ref().iter().enumerate() {
                let Some(pattern) = MediaPattern::parse(text.get_ref()) else {
                    let message = format!(
                        "{:?} is not a media type pattern (type/subtype, type/*, type/*+suffix)",
                        text.get_ref()
                    );
                    let here = key(&format!("compress_types[{i}]"));
                    return Err(cx.invalid(text.span(), &here, message));
                };
                types.push(pattern);
            }
            types
        }
    };
    let levels = match &f.compress_levels {
        None => Levels::default(),
        Some(l) => levels(l, &key("compress_levels"), cx)?,
    };
    let min_size = f.compress_min_size.map_or(DEFAULT_MIN_SIZE, |b| b.0);
    let max_size = match &f.compress_max_size {
        None => DEFAULT_MAX_SIZE.max(min_size),
        Some(v) if v.get_ref().0 < min_size => {
            let message = format!("must not be below compress_min_size ({min_size} bytes)");
            return Err(cx.invalid(v.span(), &key("compress_max_size"), message));
        }
        Some(v) => v.get_ref().0,
    };
    Ok(Some(Rules {
        codings,
        types,
        min_size,
        max_size,
        levels,
    }))
}

fn levels(f: &CompressLevelsFile, prefix: &str, cx: &Ctx<'_>) -> Result<Levels, ConfigError> {
    let defaults = Levels::default();
    let within =
        |v: &Option<Spanned<i64>>, name: &str, range: std::ops::RangeInclusive<i64>| match v {
            None => Ok(None),
            Some(v) if range.contains(v.get_ref()) => Ok(Some(*v.get_ref())),
            Some(v) => {
                let message = format!("must be between {} and {}", range.start(), range.end());
                Err(cx.invalid(v.span(), &format!("{prefix}.{name}"), message))
            }
        };
    // The ranges make the conversions exact.
    Ok(Levels {
        br: within(&f.br, "br", 0..=11)?.map_or(defaults.br, |v| v as u32),
        zstd: within(&f.zstd, "zstd", 1..=19)?.map_or(defaults.zstd, |v| v as i32),
        gzip: within(&f.gzip, "gzip", 1..=9)?.map_or(defaults.gzip, |v| v as u32),
    })
}
