//! The path prefix a client's URLs carry in front of the template's resources.
//!
//! API Gateway's own endpoint serves the API under its stage (`https://<id>.execute-api.<region>.
//! amazonaws.com/prod/setup`), while a custom domain mapped at its root serves it at `/setup`. A
//! page whose links and redirects are root-absolute (`/auth/login`) sends the browser to the host
//! root on the first, where API Gateway answers 403. So every link, form action, `Location` and
//! mailed link is built through [`BasePath::link`] with the prefix this request arrived under.
//!
//! The prefix is what the request's full path (`requestContext.path`, as the client sent it: stage
//! or mapping prefix included) has in front of the resource path (`path`, with neither). It is
//! derived from API Gateway's event, never from a client header, so a client cannot point our
//! links elsewhere.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// `""` (a root-mapped custom domain, the local gateway by default) or `/<segment>…` (the stage on
/// execute-api), never ending in `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasePath(String);

impl BasePath {
    /// No prefix: the site is served at the host's root.
    pub const fn root() -> Self {
        Self(String::new())
    }

    /// The prefix `request` arrived under. Anything unexpected (no API Gateway context, a full path
    /// that does not end with the resource path, a prefix with characters a stage or base-path
    /// mapping cannot have) is no prefix: a broken link is better than one we did not derive.
    pub fn of(request: &Request) -> Self {
        let full = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(context)) => context.path.as_deref().unwrap_or_default(),
            _ => "",
        };
        Self::from_paths(full, request.raw_http_path())
    }

    fn from_paths(full: &str, resource_path: &str) -> Self {
        let Some(prefix) = full.strip_suffix(resource_path) else { return Self::root() };
        let prefix = prefix.trim_end_matches('/');
        // Stage names are [A-Za-z0-9_-]; base-path mappings add `.` and `~`, and may have segments.
        let well_formed = prefix.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|segment| {
                !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            })
        });
        if well_formed { Self(prefix.to_owned()) } else { Self::root() }
    }

    /// A site path (`/auth/login`, `/security?saved`) as the client must ask for it.
    pub fn link(&self, site_path: &str) -> String {
        format!("{}{site_path}", self.0)
    }

    /// The prefix itself (`""` or `/prod`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_on_execute_api_and_nothing_on_a_root_mapped_domain() {
        assert_eq!(BasePath::from_paths("/prod/auth/login", "/auth/login").link("/setup"), "/prod/setup");
        assert_eq!(BasePath::from_paths("/prod/auth/login/", "/auth/login/").as_str(), "/prod");
        assert_eq!(BasePath::from_paths("/auth/login", "/auth/login").link("/setup"), "/setup");
        assert_eq!(BasePath::from_paths("/v2/kavach/setup", "/setup").as_str(), "/v2/kavach");
    }

    #[test]
    fn anything_unexpected_is_the_root() {
        // No context, a path that is not the resource's, or a prefix no stage could be.
        assert_eq!(BasePath::from_paths("", "/setup"), BasePath::root());
        assert_eq!(BasePath::from_paths("/prod/other", "/setup"), BasePath::root());
        for full in ["//evil.example/setup", "/a b/setup", "/pr\"od/setup", "/%2e%2e/setup", "/a//b/setup"] {
            assert_eq!(BasePath::from_paths(full, "/setup"), BasePath::root(), "{full}");
        }
    }
}
