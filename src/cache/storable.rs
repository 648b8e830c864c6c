//! May a response be stored by a shared cache at all (RFC 9111 §3)?
//!
//! Storing is the decision that can leak one user's data to another, so it is
//! a single function checking the rules in a fixed order, and every refusal
//! carries the `NoCacheReason` that ends up in `Cache-Status`.

use http::{HeaderMap, Method, StatusCode, header};

use crate::cache::control::{RequestDirectives, ResponseDirectives};
use crate::cache::freshness::is_heuristically_cacheable;
use crate::cache::status::NoCacheReason;
use crate::cache::vary::{Vary, known_content_encoding, parse_vary};

/// `Ok(())` when a shared cache may store this response, otherwise the first
/// rule that forbids it.
///
/// A qualified `private="x"` or `no-cache="x"` does not prevent storage; the
/// caller must drop the named fields before storing (`private`, §5.2.2.7) or
/// before serving without revalidation (`no-cache`, §5.2.2.4).
pub(crate) fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    request_cc: &RequestDirectives,
    status: StatusCode,
    response_headers: &HeaderMap,
    response_cc: &ResponseDirectives,
    set_cookie: SetCookie,
) -> Result<(), NoCacheReason> {
    // RFC 9111 §3: the method must be cacheable; Outpost stores GET only
    // (a HEAD miss is fetched as GET by the proxy).
    if method != Method::GET {
        return Err(NoCacheReason::Method);
    }
    if !status_storable(status, response_cc) {
        return Err(NoCacheReason::Status);
    }
    // RFC 9111 §3, §5.2.1.5, §5.2.2.5; §5.2.2.3: a cache that understands the
    // status code SHOULD ignore no-store next to must-understand (we only get
    // here with must-understand when the status is understood).
    if request_cc.no_store || (response_cc.no_store && !response_cc.must_understand) {
        return Err(NoCacheReason::NoStore);
    }
    // RFC 9111 §3, §5.2.2.7: unqualified private is for private caches only.
    if response_cc.private && response_cc.private_fields.is_empty() {
        return Err(NoCacheReason::Private);
    }
    // RFC 9111 §3.5: authenticated responses need explicit permission.
    let shareable =
        response_cc.public || response_cc.s_maxage.is_some() || response_cc.must_revalidate;
    if request_headers.contains_key(header::AUTHORIZATION) && !shareable {
        return Err(NoCacheReason::Authorization);
    }
    // RFC 9111 §4.1: a Vary of "*" never matches, storing it is pointless.
    match parse_vary(response_headers) {
        Vary::Any => return Err(NoCacheReason::VaryStar),
        // Accept-Encoding keys group requests by the codings Outpost knows (vary.rs): a
        // response in any other coding could reach a client that never accepted it.
        Vary::Fields(fields)
            if fields.contains(&header::ACCEPT_ENCODING)
                && !known_content_encoding(response_headers) =>
        {
            return Err(NoCacheReason::Encoding);
        }
        _ => {}
    }
    // Outpost policy (RFC 6265 §8 security considerations; RFC 9111 §3 lets a
    // cache decline anything): never replay one client's cookie to others.
    if set_cookie == SetCookie::Refuse && response_headers.contains_key(header::SET_COOKIE) {
        return Err(NoCacheReason::SetCookie);
    }
    if !has_freshness_information(status, response_headers, response_cc) {
        return Err(NoCacheReason::NoFreshness);
    }
    Ok(())
}

/// What a site does with responses that set cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SetCookie {
    /// Never stored (the default).
    #[default]
    Refuse,
    /// Stored without the `Set-Cookie` fields, which go only to the client whose request
    /// fetched the response.
    StoreWithout,
}

/// RFC 9111 §3: the status is final; 206 and 304 are excluded because
/// Outpost does not store partial responses or update-only messages; with
/// must-understand the status must be one whose caching rules we implement
/// (§5.2.2.3).
fn status_storable(status: StatusCode, cc: &ResponseDirectives) -> bool {
    let code = status.as_u16();
    if code < 200 || code == 206 || code == 304 {
        return false;
    }
    !cc.must_understand || understood(code)
}

/// Final status codes defined by RFC 9110 §15, whose caching semantics the
/// generic rules here implement.
fn understood(code: u16) -> bool {
    matches!(
        code,
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// RFC 9111 §3, last bullet: something must make the response reusable —
/// public, an explicit lifetime, or a heuristically cacheable status.
fn has_freshness_information(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
) -> bool {
    cc.public
        || cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || cc.default_ttl.is_some()
        || (headers.contains_key(header::EXPIRES) && !cc.targeted)
        || is_heuristically_cacheable(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_util::{Pairs, hm};

    struct Case {
        method: Method,
        req: Pairs<'static>,
        status: u16,
        resp: Pairs<'static>,
        want: Result<(), NoCacheReason>,
    }

    fn case(
        method: Method,
        req: Pairs<'static>,
        status: u16,
        resp: Pairs<'static>,
        want: Result<(), NoCacheReason>,
    ) -> Case {
        Case {
            method,
            req,
            status,
            resp,
            want,
        }
    }

    #[test]
    fn storable_table() {
        use NoCacheReason::{
            Authorization, NoFreshness, NoStore, Private, SetCookie, Status, VaryStar,
        };
        const CC60: &[(&str, &[u8])] = &[("cache-control", b"max-age=60")];
        let get = || Method::GET;
        let cases = [
            case(get(), &[], 200, CC60, Ok(())),
            case(get(), &[], 200, &[], Ok(())),
            case(Method::HEAD, &[], 200, CC60, Err(NoCacheReason::Method)),
            case(Method::POST, &[], 200, CC60, Err(NoCacheReason::Method)),
            case(
                Method::from_bytes(b"PURGE").unwrap(),
                &[],
                200,
                CC60,
                Err(NoCacheReason::Method),
            ),
            case(get(), &[], 100, CC60, Err(Status)),
            case(get(), &[], 101, CC60, Err(Status)),
            case(get(), &[], 206, CC60, Err(Status)),
            case(get(), &[], 304, CC60, Err(Status)),
            case(get(), &[], 302, CC60, Ok(())),
            case(get(), &[], 302, &[], Err(NoFreshness)),
            case(get(), &[], 500, &[], Err(NoFreshness)),
            case(get(), &[], 500, &[("expires", b"0")], Ok(())),
            case(get(), &[], 503, &[("cache-control", b"public")], Ok(())),
            case(get(), &[], 404, &[], Ok(())),
            case(get(), &[], 299, CC60, Ok(())),
            case(
                get(),
                &[],
                299,
                &[("cache-control", b"max-age=6, must-understand")],
                Err(Status),
            ),
            case(
                get(),
                &[],
                999,
                &[("cache-control", b"max-age=6, must-understand")],
                Err(Status),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6, no-store")],
                Err(NoStore),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6, no-store, must-understand")],
                Ok(()),
            ),
            case(
                get(),
                &[("cache-control", b"no-store")],
                200,
                CC60,
                Err(NoStore),
            ),
            case(
                get(),
                &[("cache-control", b"no-store")],
                200,
                &[("cache-control", b"max-age=6, must-understand")],
                Err(NoStore),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6, private")],
                Err(Private),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6, private=\"x-user\"")],
                Ok(()),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"private=\"x-user\", private")],
                Err(Private),
            ),
            case(get(), &[], 200, &[("cache-control", b"no-cache")], Ok(())),
            case(
                get(),
                &[("authorization", b"Bearer x")],
                200,
                CC60,
                Err(Authorization),
            ),
            case(
                get(),
                &[("authorization", b"Bearer x")],
                200,
                &[("cache-control", b"public")],
                Ok(()),
            ),
            case(
                get(),
                &[("authorization", b"x")],
                200,
                &[("cache-control", b"s-maxage=5")],
                Ok(()),
            ),
            case(
                get(),
                &[("authorization", b"x")],
                200,
                &[("cache-control", b"max-age=5, must-revalidate")],
                Ok(()),
            ),
            case(
                get(),
                &[("authorization", b"")],
                200,
                CC60,
                Err(Authorization),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6"), ("vary", b"*")],
                Err(VaryStar),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6"), ("vary", b"accept, *")],
                Err(VaryStar),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6"), ("vary", b"accept")],
                Ok(()),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"max-age=6"), ("set-cookie", b"a=b")],
                Err(SetCookie),
            ),
            case(
                get(),
                &[],
                200,
                &[("cache-control", b"\xff\xfe"), ("vary", b"\xff")],
                Ok(()),
            ),
        ];
        for c in cases {
            let req = hm(c.req);
            let resp = hm(c.resp);
            let req_cc = RequestDirectives::parse(&req);
            let resp_cc = ResponseDirectives::parse(&resp);
            let status = StatusCode::from_u16(c.status).unwrap();
            let got = storable(
                &c.method,
                &req,
                &req_cc,
                status,
                &resp,
                &resp_cc,
                super::SetCookie::Refuse,
            );
            assert_eq!(
                got, c.want,
                "{} {} {:?} {:?}",
                c.method, c.status, c.req, c.resp
            );
        }
    }

    #[test]
    fn rule_order() {
        // Several reasons at once: the earliest rule wins.
        let resp = hm(&[
            ("cache-control", b"no-store, private"),
            ("set-cookie", b"a=b"),
            ("vary", b"*"),
        ]);
        let req = hm(&[("authorization", b"x")]);
        let rcc = RequestDirectives::parse(&req);
        let scc = ResponseDirectives::parse(&resp);
        let get = Method::GET;
        assert_eq!(
            storable(
                &get,
                &req,
                &rcc,
                StatusCode::OK,
                &resp,
                &scc,
                super::SetCookie::Refuse
            ),
            Err(NoCacheReason::NoStore)
        );
        assert_eq!(
            storable(
                &Method::PUT,
                &req,
                &rcc,
                StatusCode::OK,
                &resp,
                &scc,
                super::SetCookie::Refuse
            ),
            Err(NoCacheReason::Method)
        );
        let status = StatusCode::PARTIAL_CONTENT;
        assert_eq!(
            storable(
                &get,
                &req,
                &rcc,
                status,
                &resp,
                &scc,
                super::SetCookie::Refuse
            ),
            Err(NoCacheReason::Status)
        );
    }

    #[test]
    fn understood_codes() {
        let cases = [
            (200, true),
            (205, true),
            (206, true),
            (299, false),
            (306, false),
            (418, false),
            (421, true),
            (505, true),
            (506, false),
        ];
        for (code, want) in cases {
            assert_eq!(understood(code), want, "{code}");
        }
    }
}
