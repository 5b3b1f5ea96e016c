//! The one place that decides who the client is.
//!
//! The address comes from API Gateway's request context (`identity.sourceIp`), which API Gateway
//! fills from the TCP connection it terminated. Headers such as `X-Forwarded-For`, `X-Real-IP` or
//! `CF-Connecting-IP` are client-controlled and ignored: trusting them let OpenAlgo's attackers
//! pick their own address (W7).

use std::net::IpAddr;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::core::error::AppError;
use crate::core::net::canonical;

pub fn client_ip(request: &Request) -> Result<IpAddr, AppError> {
    let source = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.as_deref(),
        _ => None,
    };
    // Without a source address the event did not come from API Gateway (or the local gateway):
    // that is a deployment fault, not a client error.
    let source = source.ok_or_else(|| AppError::internal(anyhow::anyhow!("request context has no sourceIp")))?;
    source
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| AppError::internal(anyhow::anyhow!("request context sourceIp is not an IP address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source_ip: &str, extra_headers: &str) -> Request {
        let text = format!(
            r#"{{"resource":"/api/v1/ping","path":"/api/v1/ping","httpMethod":"POST",
                "headers":{{{extra_headers}}},"multiValueHeaders":{{}},
                "requestContext":{{"resourcePath":"/api/v1/ping","httpMethod":"POST","stage":"prod",
                  "requestId":"r1","identity":{{"sourceIp":"{source_ip}"}}}},
                "body":"{{}}","isBase64Encoded":false}}"#
        );
        lambda_http::request::from_str(&text).expect("api gateway event")
    }

    #[test]
    fn uses_the_request_context_and_ignores_forwarding_headers() {
        let forged = r#""X-Forwarded-For":"9.9.9.9","X-Real-IP":"8.8.8.8","CF-Connecting-IP":"7.7.7.7""#;
        let request = event("203.0.113.7", forged);
        assert_eq!(client_ip(&request).expect("ip"), "203.0.113.7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn mapped_ipv6_is_the_ipv4_address() {
        let request = event("::ffff:198.51.100.2", "");
        assert_eq!(client_ip(&request).expect("ip"), "198.51.100.2".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn garbage_source_is_a_server_fault() {
        assert_eq!(client_ip(&event("not-an-ip", "")).expect_err("garbage").status(), 500);
    }
}
