//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and a site's own field.
//!
//! Unlike `Cache-Control`, a targeted field is a Structured Field Dictionary (RFC 9213 §2.1,
//! RFC 8941 §3.2), and its error handling is all or nothing: a field that does not parse, or
//! whose known directives carry values of the wrong type, is ignored as a whole, and the
//! response's `Cache-Control` and `Expires` apply instead (RFC 9213 §2.2). Reading such a
//! field with the lenient `Cache-Control` parser would keep half of a broken policy.

use http::HeaderValue;
use sfv::{BareItem, Dictionary, ListEntry, Parser, Version};

use crate::cache::control::{DELTA_SECONDS_MAX, ResponseDirectives, push_fields};

/// The directives of a targeted field's lines, or `None` when the field must be ignored
/// (RFC 9213 §2.1): absent, empty, not a valid Dictionary, or with a known directive whose
/// value has the wrong type.
pub(crate) fn parse<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<ResponseDirectives> {
    let dictionary = dictionary(lines)?;
    if dictionary.is_empty() {
        return None;
    }
    let mut d = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    for (key, member) in &dictionary {
        apply(&mut d, key.as_str(), member)?;
    }
    Some(d)
}

/// RFC 8941 §4.2: the lines of a field are combined with commas and parsed as one value.
/// RFC 9213 predates RFC 9651, so its Date and Display String types are syntax errors here.
fn dictionary<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Dictionary> {
    let mut combined = Vec::new();
    for line in lines {
        if !combined.is_empty() {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(line.as_bytes());
    }
    Parser::new(&combined)
        .with_version(Version::Rfc8941)
        .parse()
        .ok()
}

/// One member; `None` when its value has the wrong type for its directive. The Dictionary
/// already kept the last of duplicate keys (RFC 8941 §4.2.2). Parameters on a directive are
/// ignored (RFC 9213 §2.1).
fn apply(d: &mut ResponseDirectives, key: &str, member: &ListEntry) -> Option<()> {
    match key {
        // RFC 9213 §2.1: delta-seconds values are Integers.
        "max-age" => d.max_age = Some(seconds(member)?),
        "s-maxage" => d.s_maxage = Some(seconds(member)?),
        "stale-while-revalidate" => d.stale_while_revalidate = Some(seconds(member)?),
        "stale-if-error" => d.stale_if_error = Some(seconds(member)?),
        // RFC 9213 §2.1: a valueless directive is Boolean true.
        "no-store" => d.no_store = flag(member)?,
        "public" => d.public = flag(member)?,
        "must-revalidate" => d.must_revalidate = flag(member)?,
        "proxy-revalidate" => d.proxy_revalidate = flag(member)?,
        "must-understand" => d.must_understand = flag(member)?,
        "no-transform" => d.no_transform = flag(member)?,
        "immutable" => d.immutable = flag(member)?,
        // RFC 9213 §2.1: "either Boolean true or a string containing a comma-delimited list
        // of field names".
        "no-cache" => {
            d.no_cache_fields = field_names(member)?;
            d.no_cache = true;
        }
        "private" => {
            d.private_fields = field_names(member)?;
            d.private = true;
        }
        // RFC 9111 §5.2.3: unknown extensions are ignored, whatever their (valid) value.
        _ => {}
    }
    Some(())
}

fn bare_item(member: &ListEntry) -> Option<&BareItem> {
    match member {
        ListEntry::Item(item) => Some(&item.bare_item),
        ListEntry::InnerList(_) => None,
    }
}

/// A non-negative Integer, saturating at 2^31 like delta-seconds (RFC 9111 §1.2.2).
fn seconds(member: &ListEntry) -> Option<u64> {
    let BareItem::Integer(n) = bare_item(member)? else {
        return None;
    };
    u64::try_from(i64::from(*n))
        .ok()
        .map(|n| n.min(DELTA_SECONDS_MAX))
}

/// Boolean true; `?0` is a value RFC 9213 says a directive never has, so it is an error.
fn flag(member: &ListEntry) -> Option<bool> {
    matches!(bare_item(member)?, BareItem::Boolean(true)).then_some(true)
}

/// The fields a qualified `no-cache` / `private` names (empty for the bare form, which
/// covers every field).
fn field_names(member: &ListEntry) -> Option<Vec<String>> {
    match bare_item(member)? {
        BareItem::Boolean(true) => Some(Vec::new()),
        BareItem::String(names) => {
            let mut fields = Vec::new();
            push_fields(&mut fields, names.as_str());
            Some(fields)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &[&[u8]]) -> Vec<HeaderValue> {
        raw.iter()
            .map(|l| HeaderValue::from_bytes(l).unwrap())
            .collect()
    }

    fn one(raw: &[u8]) -> Option<ResponseDirectives> {
        parse(&lines(&[raw]))
    }

    fn max_age(raw: &[u8]) -> Option<Option<u64>> {
        one(raw).map(|d| d.max_age)
    }

    #[test]
    fn delta_seconds_directives_take_non_negative_integers_only() {
        // (field, max-age when the field is used; None = the whole field is ignored)
        let cases: &[(&[u8], Option<Option<u64>>)] = &[
            (b"max-age=60", Some(Some(60))),
            (b"max-age=0", Some(Some(0))),
            (b"max-age=007", Some(Some(7))),
            (b"max-age=999999999999999", Some(Some(1 << 31))),
            (b"max-age=2147483647", Some(Some(2_147_483_647))),
            // Integer: at most 15 digits (RFC 8941 §3.3.1).
            (b"max-age=9999999999999999", None),
            (b"max-age=-1", None),
            (b"max-age=-0", Some(Some(0))),
            // Decimal, String, Token, Byte Sequence, Boolean, Inner List.
            (b"max-age=1.5", None),
            (b"max-age=60.0", None),
            (b"max-age=\"60\"", None),
            (b"max-age=sixty", None),
            (b"max-age=:NjA=:", None),
            (b"max-age", None),
            (b"max-age=?1", None),
            (b"max-age=(60)", None),
            // Parameters on a directive are ignored.
            (b"max-age=60;foo=bar", Some(Some(60))),
            (b"max-age=60;foo", Some(Some(60))),
            // Syntax errors anywhere void the field.
            (b"max-age=60,", None),
            (b"max-age=60,,public", None),
            (b",max-age=60", None),
            (b"max-age = 60", None),
            (b"max-age=60 public", None),
            (b"MAX-AGE=60", None),
            (b"max-age=+60", None),
            (b"max-age=60;", None),
            (b"max-age=\"60", None),
            (b"max-age=@1700000000", None),
            (b"max-age=60, x=%\"a\"", None),
            (b"max-age=\t60", None),
            // Whitespace around members is allowed.
            (b"max-age=60 ,  public", Some(Some(60))),
            (b"max-age=60,\tpublic", Some(Some(60))),
        ];
        for (field, want) in cases {
            assert_eq!(
                max_age(field),
                *want,
                "{:?}",
                String::from_utf8_lossy(field)
            );
        }
        for name in ["s-maxage", "stale-while-revalidate", "stale-if-error"] {
            let ok = one(format!("{name}=30").as_bytes()).unwrap();
            let got = [ok.s_maxage, ok.stale_while_revalidate, ok.stale_if_error];
            assert_eq!(got.iter().flatten().collect::<Vec<_>>(), [&30], "{name}");
            for bad in ["\"30\"", "30.0", "-30", "?1", "thirty", "(30)"] {
                assert_eq!(
                    one(format!("{name}={bad}").as_bytes()),
                    None,
                    "{name}={bad}"
                );
            }
        }
    }

    #[test]
    fn flags_are_boolean_true() {
        let d = one(b"no-store, public, must-revalidate, proxy-revalidate, must-understand, no-transform, immutable").unwrap();
        assert!(d.no_store && d.public && d.must_revalidate && d.proxy_revalidate);
        assert!(d.must_understand && d.no_transform && d.immutable);
        assert!(!d.private && !d.no_cache);
        assert_eq!(one(b"no-store=?1").map(|d| d.no_store), Some(true));
        assert_eq!(one(b"no-store;p=1").map(|d| d.no_store), Some(true));
        for bad in [
            &b"no-store=?0"[..],
            b"no-store=\"x\"",
            b"no-store=1",
            b"no-store=yes",
            b"no-store=:AA==:",
            b"no-store=1.0",
            b"no-store=()",
            b"public=?0",
            b"immutable=\"true\"",
        ] {
            assert_eq!(one(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn no_cache_and_private_take_true_or_a_string_of_field_names() {
        // (field, Some((no_cache, no_cache_fields, private, private_fields)) or ignored)
        type Want = Option<(bool, &'static [&'static str], bool, &'static [&'static str])>;
        let cases: &[(&[u8], Want)] = &[
            (b"no-cache", Some((true, &[], false, &[]))),
            (b"no-cache=?1", Some((true, &[], false, &[]))),
            (
                b"no-cache=\"Set-Cookie, X-Foo\"",
                Some((true, &["set-cookie", "x-foo"], false, &[])),
            ),
            (b"no-cache=\"\"", Some((true, &[], false, &[]))),
            (
                b"no-cache=\"bad name, ok\"",
                Some((true, &["ok"], false, &[])),
            ),
            (b"private", Some((false, &[], true, &[]))),
            (
                b"private=\"authorization\"",
                Some((false, &[], true, &["authorization"])),
            ),
            (b"no-cache=?0", None),
            (b"no-cache=set-cookie", None),
            (b"no-cache=(\"set-cookie\")", None),
            (b"no-cache=(set-cookie x-foo)", None),
            (b"no-cache=1", None),
            (b"private=?0", None),
            (b"private=authorization", None),
            (b"private=:YQ==:", None),
        ];
        for (field, want) in cases {
            let got =
                one(field).map(|d| (d.no_cache, d.no_cache_fields, d.private, d.private_fields));
            let want = want.map(|(nc, ncf, p, pf)| {
                let owned = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                (nc, owned(ncf), p, owned(pf))
            });
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(field));
        }
    }

    #[test]
    fn unknown_directives_with_any_valid_value_are_ignored_one_by_one() {
        for value in [
            "",
            "=1",
            "=-1",
            "=1.5",
            "=\"x, y\"",
            "=tok",
            "=:AAEC:",
            "=?0",
            "=(a \"b\" 1)",
            "=();p",
            "=1;a=?0;b=\"c\"",
            "=*star/x:y",
        ] {
            let field = format!("x-ext{value}, max-age=60");
            assert_eq!(max_age(field.as_bytes()), Some(Some(60)), "{field}");
        }
        assert_eq!(max_age(b"*=1, max-age=5"), Some(Some(5)));
        // Only unknown members: a valid, non-empty field that grants nothing.
        assert_eq!(
            one(b"x-ext=1"),
            Some(ResponseDirectives {
                targeted: true,
                ..Default::default()
            })
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let cases: &[(&[u8], Option<Option<u64>>)] = &[
            (b"max-age=60, max-age=10", Some(Some(10))),
            (b"max-age=10, max-age=60", Some(Some(60))),
            // The earlier, ill-typed value is overwritten before it is read...
            (b"max-age=\"x\", max-age=60", Some(Some(60))),
            // ...and a later ill-typed one is the value.
            (b"max-age=60, max-age=\"x\"", None),
        ];
        for (field, want) in cases {
            assert_eq!(
                max_age(field),
                *want,
                "{:?}",
                String::from_utf8_lossy(field)
            );
        }
        let d = one(b"no-cache=\"a\", no-cache").unwrap();
        assert!(d.no_cache && d.no_cache_fields.is_empty());
        let d = one(b"no-cache, no-cache=\"a\"").unwrap();
        assert_eq!(d.no_cache_fields, ["a"]);
    }

    #[test]
    fn lines_are_combined_before_parsing() {
        let d = parse(&lines(&[b"max-age=60", b"no-store"])).unwrap();
        assert_eq!((d.max_age, d.no_store), (Some(60), true));
        assert_eq!(
            parse(&lines(&[b"max-age=60", b"max-age=5"]))
                .unwrap()
                .max_age,
            Some(5)
        );
        // One bad line voids the whole field.
        assert_eq!(parse(&lines(&[b"max-age=60", b"no-store=\"x\""])), None);
        // An empty line makes an empty member, which a Dictionary does not allow.
        assert_eq!(parse(&lines(&[b"max-age=60", b""])), None);
    }

    #[test]
    fn empty_absent_and_non_ascii_fields_are_ignored() {
        assert_eq!(parse(&lines(&[])), None);
        for field in [
            &b""[..],
            b" ",
            b"max-age=60, \xff",
            b"x=\"\xc3\xa9\"",
            b"\x80",
        ] {
            assert_eq!(one(field), None, "{field:?}");
        }
    }
}
