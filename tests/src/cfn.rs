//! CloudFormation's side of a custom resource, for the `KeyRing` tests: the requests it sends the
//! function and the pre-signed `ResponseURL` it reads the answer from, here a loopback HTTP server
//! that records every request made to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One request that reached the sink.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub method: String,
    pub path: String,
    /// The `content-type` header, if any: a pre-signed S3 URL is signed without one.
    pub content_type: Option<String>,
    pub body: Value,
}

/// The stand-in for the pre-signed S3 URLs CloudFormation hands out.
#[derive(Debug, Clone)]
pub struct ResponseSink {
    address: SocketAddr,
    delivered: Arc<Mutex<Vec<Delivered>>>,
}

impl ResponseSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the response sink");
        let address = listener.local_addr().expect("address");
        let delivered: Arc<Mutex<Vec<Delivered>>> = Arc::default();
        let log = delivered.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let bytes = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
                            log.lock().expect("sink log").push(Delivered {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                content_type: parts
                                    .headers
                                    .get("content-type")
                                    .and_then(|value| value.to_str().ok())
                                    .map(str::to_owned),
                                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                            });
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { address, delivered }
    }

    /// A fresh "pre-signed" URL for one request.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/cloudformation-responses/{name}?X-Amz-Signature=test", self.address)
    }

    /// What was delivered to `url`'s path, in order.
    pub fn delivered_to(&self, url: &str) -> Vec<Delivered> {
        let path = url.split('?').next().unwrap_or_default().trim_start_matches(&format!("http://{}", self.address));
        self.delivered.lock().expect("sink log").iter().filter(|delivered| delivered.path == path).cloned().collect()
    }
}

/// The stack id CloudFormation gives a stack named `stack`.
pub fn stack_id(stack: &str) -> String {
    format!("arn:aws:cloudformation:ap-south-1:123456789012:stack/{stack}/2f0c7a40-cf9e-11ef-9a5b-0a1b2c3d4e5f")
}

/// A `Create`, `Update` or `Delete` request for the `KeyRing` resource of `stack`, as CloudFormation
/// sends it (Update and Delete carry the physical id an earlier answer gave).
pub fn key_ring_request(kind: &str, stack: &str, response_url: &str, physical_id: Option<&str>) -> Value {
    let mut request = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:ap-south-1:123456789012:function:kavach-KeyRingFunction-abc",
        "ResponseURL": response_url,
        "StackId": stack_id(stack),
        "RequestId": format!("{kind}-{}", crate::unique_name("request")),
        "LogicalResourceId": "KeyRing",
        "ResourceType": "Custom::KeyRing",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:ap-south-1:123456789012:function:kavach-KeyRingFunction-abc",
            "ServiceTimeout": "300"
        }
    });
    if let Some(physical_id) = physical_id {
        request["PhysicalResourceId"] = json!(physical_id);
    }
    if kind == "Update" {
        request["OldResourceProperties"] = request["ResourceProperties"].clone();
    }
    request
}

/// The Lambda Runtime API as AWS serves it to a function's process, for one invocation: the first
/// `GET …/invocation/next` gets `event`, later ones wait forever (as a function waits for its
/// next request); what the function posts back is recorded.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    pub address: SocketAddr,
    posted: Arc<Mutex<Vec<(String, Value)>>>,
}

impl RuntimeApi {
    pub async fn start(event: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the runtime API");
        let address = listener.local_addr().expect("address");
        let posted: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let pending = Arc::new(Mutex::new(Some(event)));
        let log = posted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (log, pending) = (log.clone(), pending.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (log, pending) = (log.clone(), pending.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let path = parts.uri.path().to_owned();
                            if path.ends_with("/invocation/next") {
                                let next = pending.lock().expect("pending").take();
                                let Some(event) = next else { return std::future::pending().await };
                                let response = hyper::Response::builder()
                                    .header("lambda-runtime-aws-request-id", "invocation-1")
                                    .header("lambda-runtime-deadline-ms", "4102444800000")
                                    .header(
                                        "lambda-runtime-invoked-function-arn",
                                        "arn:aws:lambda:ap-south-1:123456789012:function:kavach-KeyRingFunction",
                                    )
                                    .body(Full::new(Bytes::from(event.to_string())))
                                    .expect("response");
                                return Ok::<_, Infallible>(response);
                            }
                            let bytes = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
                            log.lock()
                                .expect("runtime log")
                                .push((path, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
                            let accepted = hyper::Response::builder().status(202).body(Full::new(Bytes::new()));
                            Ok(accepted.expect("response"))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { address, posted }
    }

    /// What the function posted (`/…/invocation/<id>/response` or `/error`), in order.
    pub fn posted(&self) -> Vec<(String, Value)> {
        self.posted.lock().expect("runtime log").clone()
    }
}
