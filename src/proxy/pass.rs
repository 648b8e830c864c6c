//! Methods the cache does not handle (anything but GET and HEAD): forwarded once to the
//! origin with the request body (read first up to the site's buffer, see
//! [`crate::origin::upload`]), the response streamed back; a successful unsafe
//! method invalidates what is stored for its URI and the same-origin URIs its response names
//! (RFC 9111 §4.4).

use std::sync::Arc;

use crate::service::ClientBody;

use super::outcome::Served;
use super::request::{self, Forward, RequestContext};
use super::{Proxy, respond};
use crate::cache::invalidation::same_origin_target;
use crate::cache::status::Fwd;
use crate::origin::OriginRequest;
use crate::origin::upload::RequestBody;

impl Proxy {
    /// Methods we never cache: forwarded once with the client's body; a successful unsafe
    /// method invalidates what is stored for the URI (RFC 9111 §4.4).
    pub(super) async fn pass(self: Arc<Self>, ctx: RequestContext, body: ClientBody) -> Served {
        let announced = ctx
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Read (up to the site's buffer) before an origin connection is taken, so that slow
        // clients hold no origin slot.
        let body = match RequestBody::receive(
            body,
            announced,
            &ctx.site.upload,
            &self.upload_budget,
        )
        .await
        {
            Ok(body) => body,
            Err(e) => return respond::error(&self.node, &e, Some(Fwd::Method)),
        };
        let mut headers = request::origin_headers(&ctx, &self.node.name, Forward::Pass);
        if body.is_buffered() {
            // The client was told to continue already; the origin gets the body at once.
            headers.remove(http::header::EXPECT);
        }
        let request = OriginRequest {
            method: ctx.method.clone(),
            path_and_query: ctx.path_and_query.clone(),
            headers,
        };
        match ctx.site.origin.send(&request, Some(body)).await {
            Ok(response) => {
                let status = response.status();
                if !ctx.method.is_safe() && (status.is_success() || status.is_redirection()) {
                    let mut keys = vec![ctx.key.clone()];
                    keys.extend(related_keys(&ctx, response.headers()));
                    self.invalidate_everywhere(keys).await;
                }
                respond::pass(
                    &self.node,
                    response,
                    ctx.site.origin.first_byte_timeout(),
                    &ctx.site.policy,
                )
            }
            Err(e) => respond::error(&self.node, &e, Some(Fwd::Method)),
        }
    }
}

/// RFC 9111 §4.4: after an unsafe method, the URIs in `Location` and `Content-Location` are
/// invalidated too, but only when same-origin (a response must not purge another site's
/// objects).
fn related_keys(ctx: &RequestContext, headers: &http::HeaderMap) -> Vec<String> {
    let Some((host, port)) = ctx
        .authority
        .to_str()
        .ok()
        .and_then(request::split_authority)
    else {
        return Vec::new();
    };
    let scheme = &ctx.client.scheme;
    [http::header::LOCATION, http::header::CONTENT_LOCATION]
        .iter()
        .filter_map(|name| headers.get(name))
        .filter_map(|value| {
            same_origin_target(
                scheme.as_str(),
                &host,
                port,
                ctx.path_and_query.as_str(),
                value.as_bytes(),
            )
        })
        .map(|target| ctx.site.key(scheme, &host, port, &target))
        .filter(|key| *key != ctx.key)
        .collect()
}
