"""Splits a `perf record --call-graph dwarf` profile of `kavach-bench calls` into who spent the CPU.

Reads `perf script` output on stdin. Each sample's stack is walked from the leaf towards the root;
the first frame that belongs to a known owner decides whose work the sample is:
- the AWS SDK: its crates (aws-smithy-*, aws-sdk-*, aws-sigv4, aws-runtime, ...) and its HTTP
  client (hyper, hyper-util, h2, tower);
- Kavach: the shared crate, the function crates, and what renders their pages (maud);
- the Lambda adapter (lambda_http): the event and response conversion a Lambda does around the
  handler;
- the async runtime (tokio's scheduler, its parking and waking) and the benchmark's own loop.
Frames of general-purpose code (std, alloc, serde, tracing, hashing, the allocator, the kernel and
tokio's I/O types) belong to whoever called them, so they are skipped in that walk. For the SDK's
samples, the frames up to the deciding one say what the SDK was doing (signing, JSON, the HTTP
client and syscalls, tracing, ...): the first category, in the order below, that a frame matches.

Usage: perf script --no-inline -i perf.data | bench-profile.py CPU_MICROS_PER_REQUEST
"""

import re
import sys
from collections import Counter

SDK = re.compile(
    r"^(aws_smithy_\w+|aws_sdk_\w+|aws_sigv4|aws_runtime|aws_credential_types|aws_config|aws_types"
    r"|hyper|hyper_util|hyper_rustls|h2|tower|tower_service|http_body_util|http_body)$"
)
OURS = re.compile(r"^(shared|ping|orders|account|web|webhook|market|fill_engine|maud|maud_macros)$")
ADAPTER = re.compile(r"^(lambda_http|lambda_runtime|lambda_runtime_api_client|aws_lambda_events)$")
HARNESS = re.compile(r"^(kavach_bench|bench|kavach_tests)$")

# What the SDK was doing: (label, pattern on a frame's symbol), first match wins.
SDK_WORK = [
    ("signing (SigV4, hashing)", re.compile(r"aws_sigv4|sha2::|hmac::|ring::|aws_lc")),
    ("tracing (spans, events)", re.compile(r"tracing(_core|_subscriber)?::")),
    ("JSON (de)serialisation", re.compile(r"aws_smithy_json|serde_json|::protocol_serde::|::de_\w+|::ser_\w+")),
    ("endpoint resolution", re.compile(r"endpoint", re.IGNORECASE)),
    ("retries and timeouts", re.compile(r"retr(y|ies)|timeout|token_bucket|stalled_stream|MaybeTimeout", re.IGNORECASE)),
    ("interceptors", re.compile(r"interceptor|Intercept", re.IGNORECASE)),
    ("config bag and runtime plugins", re.compile(r"config_bag|runtime_plugin|RuntimeComponents|ConfigBag|Layer")),
    ("identity and credentials", re.compile(r"identity|credential", re.IGNORECASE)),
    ("HTTP client and syscalls", re.compile(r"hyper|h2::|\[kernel|mio::|tokio::net|tokio::io|http::")),
    ("allocation and drops", re.compile(r"malloc|free|realloc|drop_in_place|alloc::|memcpy|memmove")),
]

# A path's first segment: at the start of the symbol or after `<`, `&`, `(`, `,`, `*`, `[` or a
# space (so `alloc::raw_vec::RawVec` names alloc, not raw_vec).
CRATE = re.compile(r"(?:^|[<&(,*\[ ])(?:dyn |mut |const )?([A-Za-z_][A-Za-z0-9_]*)::")
NEUTRAL = {"core", "alloc", "std", "serde", "serde_json", "tracing", "tracing_core", "tracing_subscriber",
           "sha2", "hmac", "digest", "hashbrown", "bytes", "itoa", "ryu", "memchr", "smallvec", "indexmap",
           "once_cell", "pin_project_lite", "futures_util", "futures_core", "futures", "http", "percent_encoding",
           "base64", "hex", "time", "fastrand", "subtle", "block_buffer", "sharded_slab", "thread_local",
           "parking_lot", "parking_lot_core", "crossbeam_utils", "regex_automata", "aho_corasick", "form_urlencoded",
           "url", "idna", "mio", "_ZN4core", "uuid", "chrono", "tinyvec", "zeroize", "arc_swap", "lock_api"}


def crate_of(symbol):
    """The first crate a demangled symbol names, beyond std (`<hyper::X as core::Future>::poll`
    is hyper's; `core::ptr::drop_in_place<aws_smithy_types::Y>` is aws_smithy_types')."""
    for name in CRATE.findall(symbol):
        if name in ("core", "alloc", "std"):
            continue
        return name
    return None


def owner(frames):
    """(owner, index of the deciding frame) for one sample's frames, leaf first."""
    for index, (symbol, dso) in enumerate(frames):
        if "kernel" in dso:
            continue
        if symbol.startswith("tokio::runtime") or "tokio::runtime::" in symbol.split("<")[0]:
            return "runtime", index
        crate = crate_of(symbol)
        if crate is None or crate in NEUTRAL or crate == "tokio":
            continue
        if SDK.match(crate):
            return "sdk", index
        if OURS.match(crate):
            return "kavach", index
        if ADAPTER.match(crate):
            return "adapter", index
        if HARNESS.match(crate):
            return "harness", index
        return "other:" + crate, index
    return "runtime", len(frames)


def short(symbol):
    """A function's path without generic arguments, closures or `<T as Trait>` (`T::method`), and
    without `shared::`, cut to its last 42 characters (the part that names it)."""
    dropped = re.match(r"core::ptr::drop_in_place<(.*)>$", symbol)
    name = "drop " + dropped.group(1) if dropped else symbol
    for _ in range(4):
        name = re.sub(r"(?<=[A-Za-z0-9_:])<[^<>]*>", "", name).replace("::::", "::")
    name = re.sub(r"<([^<>]+?) as [^<>]+>", r"\1", name)
    name = re.sub(r"::\{\{closure\}\}|::\{shim[^}]*\}", "", name).replace("shared::", "")
    return name if len(name) <= 42 else "…" + name[-41:]


def samples(lines):
    frames = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if line[0] in " \t":
            parts = line.strip().split(None, 1)
            if len(parts) < 2:
                continue
            rest = parts[1]
            dso = rest[rest.rfind("(") + 1 : -1] if rest.endswith(")") else ""
            symbol = rest[: rest.rfind(" (")] if " (" in rest else rest
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
            frames.append((symbol, dso))
    if frames:
        yield frames


def main():
    per_request = float(sys.argv[1]) if len(sys.argv) > 1 else None
    owners, sdk_work, others, ours = Counter(), Counter(), Counter(), Counter()
    total = 0
    for frames in samples(sys.stdin):
        total += 1
        who, index = owner(frames)
        if who.startswith("other:"):
            others[who[6:]] += 1
            who = "other"
        owners[who] += 1
        if who == "kavach":
            ours[short(frames[index][0])] += 1
        if who == "sdk":
            seen = " ".join(symbol + " " + dso for symbol, dso in frames[: index + 1])
            label = next((label for label, pattern in SDK_WORK if pattern.search(seen)), "orchestrator, other")
            sdk_work[label] += 1
    if total == 0:
        sys.exit("bench-profile: no samples in the profile")

    def row(label, count):
        share = count / total
        micros = f"{share * per_request:6.0f} µs" if per_request else ""
        return f"  {label:<44} {100 * share:5.1f}%  {micros}"

    print(f"profile: {total} samples of the measured loop (perf, cpu-clock, DWARF call graphs)")
    names = {"sdk": "AWS SDK (its crates and HTTP client)", "kavach": "Kavach (shared + the function)",
             "adapter": "Lambda adapter (lambda_http)", "runtime": "async runtime (tokio) and kernel",
             "harness": "benchmark loop", "other": "other crates"}
    for who, count in owners.most_common():
        print(row(names[who], count))
        if who == "sdk":
            for label, work in sdk_work.most_common():
                print(row("  " + label, work))
        if who == "other":
            print("    " + ", ".join(f"{crate} {n}" for crate, n in others.most_common(8)))
        if who == "kavach":
            # Where our share goes: the function of ours nearest the leaf, with what it called.
            for function, count in ours.most_common(8):
                print(row("  " + function, count))
    if per_request:
        print(f"  (µs: the shares of the {per_request:.0f} µs of process CPU per request measured in the same run)")
        kavach = owners["kavach"] / total * per_request
        print(f"PROFILE kavach_us={kavach:.0f} sdk_us={owners['sdk'] / total * per_request:.0f}")


if __name__ == "__main__":
    main()
