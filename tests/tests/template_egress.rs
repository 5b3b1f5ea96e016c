//! The static egress IP in the template (issue 13, item 7), where only the template can show it:
//! the local stack has no VPC, NAT or Elastic IP to run. `StaticEgress` (off, nat-gateway,
//! nat-instance) is evaluated here the way CloudFormation evaluates it: each resource's
//! `Condition` from the template's `Conditions`, and every `!If` in the properties resolved, so a
//! test sees the stack each mode deploys.
//! - `off`, the default, creates nothing new and changes no existing resource;
//! - each mode creates exactly its kind of NAT, with one Elastic IP, and the stack outputs it;
//! - DynamoDB is reached through a gateway endpoint on the private route tables;
//! - exactly the functions that call a broker join the VPC, and only when a mode is on;
//! - the NAT instance forwards (source/destination check off, forwarding and masquerade).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value as Yaml;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

/// The functions whose requests reach a broker: order, account and market routes, strategy
/// webhooks, the fill engine, and the daily rollover (its session deletes). A new broker-calling
/// function (the broker page) joins this list and the VPC together.
const BROKER_CALLING: &[&str] = &[
    "OrdersFunction",
    "AccountFunction",
    "MarketFunction",
    "WebhookFunction",
    "FillEngineFunction",
    "RolloverFunction",
];

const MODES: &[&str] = &["off", "nat-gateway", "nat-instance"];

fn template() -> Yaml {
    let text = std::fs::read_to_string(TEMPLATE).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// An intrinsic's name without `!` or `Fn::` (`Ref`, `GetAtt`, `If`, …) and its argument.
fn intrinsic(value: &Yaml) -> Option<(String, &Yaml)> {
    match value {
        Yaml::Tagged(tagged) => Some((tagged.tag.to_string().trim_start_matches('!').to_owned(), &tagged.value)),
        Yaml::Mapping(map) if map.len() == 1 => {
            let (name, argument) = map.iter().next()?;
            let name = name.as_str()?;
            (name == "Ref" || name == "Condition" || name.starts_with("Fn::"))
                .then(|| (name.trim_start_matches("Fn::").to_owned(), argument))
        }
        _ => None,
    }
}

fn reference(value: &Yaml) -> Option<&str> {
    match intrinsic(value)? {
        (name, argument) if name == "Ref" => argument.as_str(),
        _ => None,
    }
}

/// The template as one mode deploys it: parameter values, conditions, and the resources created.
struct Deployed<'a> {
    template: &'a Yaml,
    conditions: BTreeMap<String, bool>,
}

impl<'a> Deployed<'a> {
    fn new(template: &'a Yaml, mode: &str) -> Self {
        let mut parameters: BTreeMap<String, String> = BTreeMap::new();
        for (name, spec) in template["Parameters"].as_mapping().expect("parameters") {
            let value = match &spec["Default"] {
                Yaml::String(text) => text.clone(),
                Yaml::Number(number) => number.to_string(),
                _ => continue,
            };
            parameters.insert(name.as_str().expect("parameter name").to_owned(), value);
        }
        parameters.insert("StaticEgress".to_owned(), mode.to_owned());
        let mut conditions = BTreeMap::new();
        for (name, expression) in template["Conditions"].as_mapping().expect("conditions") {
            let name = name.as_str().expect("condition name");
            conditions.insert(name.to_owned(), condition(template, expression, &parameters));
        }
        Deployed { template, conditions }
    }

    fn holds(&self, name: &str) -> bool {
        *self.conditions.get(name).unwrap_or_else(|| panic!("condition {name} is declared"))
    }

    /// Logical id → resource, for every resource this mode creates.
    fn resources(&self) -> BTreeMap<&'a str, &'a Yaml> {
        self.template["Resources"]
            .as_mapping()
            .expect("resources")
            .iter()
            .filter(|(_, resource)| resource.get("Condition").and_then(Yaml::as_str).is_none_or(|c| self.holds(c)))
            .map(|(id, resource)| (id.as_str().expect("logical id"), resource))
            .collect()
    }

    fn of_type(&self, kind: &str) -> Vec<(&'a str, Yaml)> {
        self.resources()
            .into_iter()
            .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
            .map(|(id, resource)| (id, self.resolve(&resource["Properties"]).unwrap_or(Yaml::Null)))
            .collect()
    }

    fn one(&self, kind: &str) -> (&'a str, Yaml) {
        let found = self.of_type(kind);
        assert_eq!(found.len(), 1, "exactly one {kind}: {:?}", found.iter().map(|(id, _)| id).collect::<Vec<_>>());
        found.into_iter().next().expect("one")
    }

    /// `value` with every `!If` taken by this mode's conditions; `None` where it is
    /// `!Ref AWS::NoValue` (the property is absent).
    fn resolve(&self, value: &Yaml) -> Option<Yaml> {
        if reference(value) == Some("AWS::NoValue") {
            return None;
        }
        if let Some((name, argument)) = intrinsic(value)
            && name == "If"
        {
            let branches = argument.as_sequence().expect("!If takes three items");
            let condition = branches[0].as_str().expect("!If names a condition");
            return self.resolve(&branches[if self.holds(condition) { 1 } else { 2 }]);
        }
        Some(match value {
            Yaml::Mapping(map) => {
                Yaml::Mapping(map.iter().filter_map(|(key, item)| Some((key.clone(), self.resolve(item)?))).collect())
            }
            Yaml::Sequence(items) => Yaml::Sequence(items.iter().filter_map(|item| self.resolve(item)).collect()),
            Yaml::Tagged(tagged) => {
                let inner = self.resolve(&tagged.value).unwrap_or(Yaml::Null);
                Yaml::Tagged(Box::new(serde_yaml::value::TaggedValue { tag: tagged.tag.clone(), value: inner }))
            }
            other => other.clone(),
        })
    }
}

/// A condition's value: `!Equals`, `!Not`, `!And`, `!Or` and `!Condition` over parameters.
fn condition(template: &Yaml, expression: &Yaml, parameters: &BTreeMap<String, String>) -> bool {
    let (name, argument) = intrinsic(expression).unwrap_or_else(|| panic!("a condition function: {expression:?}"));
    let operands = || argument.as_sequence().expect("condition operands").iter();
    let scalar = |value: &Yaml| match reference(value) {
        Some(parameter) => parameters.get(parameter).unwrap_or_else(|| panic!("parameter {parameter}")).clone(),
        None => value.as_str().map(str::to_owned).unwrap_or_else(|| panic!("a string or !Ref: {value:?}")),
    };
    match name.as_str() {
        "Equals" => {
            let items: Vec<String> = operands().map(scalar).collect();
            items[0] == items[1]
        }
        "Not" => !condition(template, &argument[0], parameters),
        "And" => operands().all(|operand| condition(template, operand, parameters)),
        "Or" => operands().any(|operand| condition(template, operand, parameters)),
        "Condition" => {
            let name = argument.as_str().expect("a condition name");
            condition(template, &template["Conditions"][name], parameters)
        }
        other => panic!("condition function {other} is not evaluated here"),
    }
}

/// Every logical id `value` names: `!Ref`, `!GetAtt` and `!Sub`'s `${X}` or `${X.Attribute}`.
fn references(value: &Yaml, found: &mut BTreeSet<String>) {
    if let Some((name, argument)) = intrinsic(value) {
        match name.as_str() {
            "Ref" => {
                found.insert(argument.as_str().expect("!Ref name").to_owned());
            }
            "GetAtt" => {
                let target = match argument {
                    Yaml::String(text) => text.split('.').next().unwrap_or_default().to_owned(),
                    Yaml::Sequence(parts) => parts[0].as_str().unwrap_or_default().to_owned(),
                    other => panic!("!GetAtt {other:?}"),
                };
                found.insert(target);
            }
            "Sub" => {
                let text = match argument {
                    Yaml::Sequence(parts) => {
                        references(&parts[1], found);
                        parts[0].as_str().unwrap_or_default()
                    }
                    other => other.as_str().unwrap_or_default(),
                };
                for piece in text.split("${").skip(1) {
                    let variable = piece.split('}').next().unwrap_or_default();
                    if !variable.starts_with('!') {
                        found.insert(variable.split('.').next().unwrap_or_default().to_owned());
                    }
                }
            }
            _ => references(argument, found),
        }
        return;
    }
    match value {
        Yaml::Mapping(map) => map.values().for_each(|item| references(item, found)),
        Yaml::Sequence(items) => items.iter().for_each(|item| references(item, found)),
        Yaml::Tagged(tagged) => references(&tagged.value, found),
        _ => {}
    }
}

fn names(value: &Yaml) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    references(value, &mut found);
    found
}

/// What `off` does not create and some mode does: the egress resources.
fn egress_resources(template: &Yaml) -> BTreeSet<String> {
    let off: BTreeSet<&str> = Deployed::new(template, "off").resources().into_keys().collect();
    let mut added = BTreeSet::new();
    for mode in &MODES[1..] {
        for id in Deployed::new(template, mode).resources().into_keys() {
            if !off.contains(id) {
                added.insert(id.to_owned());
            }
        }
    }
    added
}

#[test]
fn off_is_the_default_and_creates_or_changes_nothing() {
    let template = template();
    assert_eq!(template["Parameters"]["StaticEgress"]["Default"].as_str(), Some("off"), "off is the default");
    let allowed: Vec<&str> = template["Parameters"]["StaticEgress"]["AllowedValues"]
        .as_sequence()
        .expect("AllowedValues")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(allowed, MODES, "the modes");

    let off = Deployed::new(&template, "off");
    let created = off.resources();
    let egress = egress_resources(&template);
    assert!(egress.len() >= 10, "the modes add a VPC and its parts: {egress:?}");
    for id in &egress {
        assert!(id.starts_with("Egress"), "{id}: what StaticEgress adds is named Egress… so a reader can tell");
    }
    // No network resource at all without a mode: no VPC, subnet, NAT, address or endpoint.
    for (id, resource) in &created {
        let kind = resource["Type"].as_str().unwrap_or_default();
        assert!(!kind.starts_with("AWS::EC2::"), "off creates {id} ({kind})");
    }
    // Nothing off deploys names an egress resource, in its properties or its DependsOn: every
    // reference to one sits in an `!If` that off does not take, so existing resources are
    // deployed exactly as before.
    for (id, resource) in &created {
        let resolved = off.resolve(&resource["Properties"]).unwrap_or(Yaml::Null);
        let mut named = names(&resolved);
        if let Some(depends) = resource["DependsOn"].as_str() {
            named.insert(depends.to_owned());
        }
        for dependency in resource["DependsOn"].as_sequence().into_iter().flatten().filter_map(Yaml::as_str) {
            named.insert(dependency.to_owned());
        }
        let dangling: Vec<&String> = named.iter().filter(|name| egress.contains(*name)).collect();
        assert!(dangling.is_empty(), "{id} names {dangling:?} with StaticEgress=off");
        assert!(resolved.get("VpcConfig").is_none(), "{id} joins a VPC with StaticEgress=off");
    }
    for (name, output) in template["Outputs"].as_mapping().expect("outputs") {
        let resolved = off.resolve(&output["Value"]).unwrap_or(Yaml::Null);
        let dangling: Vec<String> = names(&resolved).into_iter().filter(|name| egress.contains(name)).collect();
        assert!(dangling.is_empty(), "output {name:?} names {dangling:?} with StaticEgress=off");
    }
}

#[test]
fn each_mode_creates_exactly_its_kind_of_nat_with_one_elastic_ip() {
    let template = template();
    for (mode, gateways, instances) in [("nat-gateway", 1, 0), ("nat-instance", 0, 1)] {
        let deployed = Deployed::new(&template, mode);
        assert_eq!(deployed.of_type("AWS::EC2::NatGateway").len(), gateways, "{mode}: NAT gateways");
        assert_eq!(deployed.of_type("AWS::EC2::Instance").len(), instances, "{mode}: NAT instances");
        assert_eq!(deployed.of_type("AWS::EC2::VPC").len(), 1, "{mode}: one VPC");
        assert_eq!(deployed.of_type("AWS::EC2::InternetGateway").len(), 1, "{mode}: one Internet gateway");
        let (address, _) = deployed.one("AWS::EC2::EIP");

        // The private route table's default route leads to this mode's NAT, which holds the address.
        let (nat, attached) = if mode == "nat-gateway" {
            let (nat, properties) = deployed.one("AWS::EC2::NatGateway");
            assert_eq!(names(&properties["AllocationId"]), BTreeSet::from([address.to_owned()]), "{nat}'s address");
            (nat, "NatGatewayId")
        } else {
            let (nat, _) = deployed.one("AWS::EC2::Instance");
            let properties = deployed.resolve(&template["Resources"][address]["Properties"]).expect("EIP properties");
            assert_eq!(reference(&properties["InstanceId"]), Some(nat), "{address} is associated with {nat}");
            (nat, "InstanceId")
        };
        let defaults: Vec<Yaml> = deployed
            .of_type("AWS::EC2::Route")
            .into_iter()
            .map(|(_, route)| route)
            .filter(|route| names(&route[attached]).contains(nat))
            .collect();
        assert_eq!(defaults.len(), 1, "{mode}: one route through {nat}");
        assert_eq!(defaults[0]["DestinationCidrBlock"].as_str(), Some("0.0.0.0/0"), "{mode}: the default route");
        for other in ["NatGatewayId", "InstanceId", "GatewayId"].iter().filter(|key| **key != attached) {
            assert!(defaults[0].get(*other).is_none(), "{mode}: the NAT route has no {other} as well");
        }
    }
}

#[test]
fn the_nat_instance_forwards_with_source_destination_check_off() {
    let template = template();
    let deployed = Deployed::new(&template, "nat-instance");
    let (nat, properties) = deployed.one("AWS::EC2::Instance");
    assert_eq!(properties["SourceDestCheck"].as_bool(), Some(false), "{nat} forwards others' packets");
    assert_eq!(properties["InstanceType"].as_str(), Some("t4g.nano"), "{nat}: the low-cost arm64 type");
    assert!(properties.get("KeyName").is_none(), "{nat}: no key pair, nobody logs in");
    let image = reference(&properties["ImageId"]).expect("the AMI from a parameter");
    let parameter = &template["Parameters"][image];
    assert_eq!(parameter["Type"].as_str(), Some("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"), "{image}");
    let path = parameter["Default"].as_str().expect("a default SSM path");
    assert!(
        path.starts_with("/aws/service/ami-amazon-linux-latest/al2023-") && path.ends_with("-arm64"),
        "{image}: Amazon Linux 2023 arm64 from the public SSM parameter, not {path}"
    );
    let script = match intrinsic(&properties["UserData"]) {
        Some((name, argument)) if name == "Base64" => match intrinsic(argument) {
            Some((sub, text)) if sub == "Sub" => text.as_str().expect("a script").to_owned(),
            _ => argument.as_str().expect("a script").to_owned(),
        },
        other => panic!("{nat}: UserData is !Base64 of the script, not {other:?}"),
    };
    for needed in ["net.ipv4.ip_forward = 1", "-j MASQUERADE", "iptables -F FORWARD", "service iptables save"] {
        assert!(script.contains(needed), "{nat}'s UserData lacks {needed:?}");
    }
    // Only the private subnets' HTTPS comes in.
    let groups = names(&properties["SecurityGroupIds"]);
    assert_eq!(groups.len(), 1, "{nat}: one security group");
    let group = groups.first().expect("one");
    let rules =
        &deployed.resolve(&template["Resources"][group.as_str()]["Properties"]).expect("group")["SecurityGroupIngress"];
    for rule in rules.as_sequence().expect("ingress rules") {
        assert_eq!(rule["FromPort"].as_u64(), Some(443), "{group}: {rule:?}");
        assert_ne!(rule["CidrIp"].as_str(), Some("0.0.0.0/0"), "{group} admits the Internet: {rule:?}");
    }
}

/// A string, or the text of a `!Sub`.
fn text(value: &Yaml) -> Option<String> {
    match intrinsic(value) {
        Some((name, argument)) if name == "Sub" => argument.as_str().map(str::to_owned),
        Some(_) => None,
        None => value.as_str().map(str::to_owned),
    }
}

/// The subnets a function's resolved `VpcConfig` names.
fn function_subnets(deployed: &Deployed, function: &str) -> BTreeSet<String> {
    let properties = deployed.resolve(&deployed.template["Resources"][function]["Properties"]).expect("properties");
    names(&properties["VpcConfig"]["SubnetIds"])
}

/// Route tables associated with `subnet`.
fn route_tables_of(deployed: &Deployed, subnet: &str) -> BTreeSet<String> {
    deployed
        .of_type("AWS::EC2::SubnetRouteTableAssociation")
        .into_iter()
        .filter(|(_, association)| reference(&association["SubnetId"]) == Some(subnet))
        .filter_map(|(_, association)| reference(&association["RouteTableId"]).map(str::to_owned))
        .collect()
}

#[test]
fn dynamodb_is_reached_through_a_gateway_endpoint_on_the_private_route_tables() {
    let template = template();
    for mode in &MODES[1..] {
        let deployed = Deployed::new(&template, mode);
        let endpoints: Vec<(&str, Yaml)> = deployed
            .of_type("AWS::EC2::VPCEndpoint")
            .into_iter()
            .filter(|(_, endpoint)| text(&endpoint["ServiceName"]).is_some_and(|name| name.ends_with(".dynamodb")))
            .collect();
        assert_eq!(endpoints.len(), 1, "{mode}: one DynamoDB endpoint");
        let (endpoint, properties) = &endpoints[0];
        assert_eq!(properties["VpcEndpointType"].as_str(), Some("Gateway"), "{endpoint}: a (free) gateway endpoint");
        let on = names(&properties["RouteTableIds"]);
        let mut private = BTreeSet::new();
        for function in BROKER_CALLING {
            for subnet in function_subnets(&deployed, function) {
                let tables = route_tables_of(&deployed, &subnet);
                assert_eq!(tables.len(), 1, "{mode}: {subnet} has a route table");
                private.extend(tables);
            }
        }
        assert!(!private.is_empty(), "{mode}: the functions' subnets have route tables");
        for table in &private {
            assert!(on.contains(table), "{mode}: {endpoint} is not on {table}, a private route table");
            // Private: nothing routes to the Internet gateway from it.
            for (route_id, route) in deployed.of_type("AWS::EC2::Route") {
                if reference(&route["RouteTableId"]) == Some(table.as_str()) {
                    assert!(route.get("GatewayId").is_none(), "{mode}: {route_id} routes {table} to a gateway");
                }
            }
        }
    }
}

#[test]
fn exactly_the_broker_calling_functions_join_the_vpc_and_only_when_on() {
    let template = template();
    let functions: Vec<&str> = template["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(id, _)| id.as_str())
        .collect();
    for function in BROKER_CALLING {
        assert!(functions.contains(function), "{function} is in template.yaml");
    }
    assert!(template["Globals"]["Function"].get("VpcConfig").is_none(), "not every function calls a broker");
    for function in &functions {
        let config = &template["Resources"][*function]["Properties"]["VpcConfig"];
        if !BROKER_CALLING.contains(function) {
            assert!(config.is_null(), "{function} calls no broker but has a VpcConfig");
            continue;
        }
        // Written as `!If [StaticEgressOn, {…}, !Ref AWS::NoValue]`: absent, not empty, when off.
        let (name, branches) = intrinsic(config)
            .unwrap_or_else(|| panic!("{function} calls a broker: its VpcConfig is `!If [StaticEgressOn, …]`"));
        assert_eq!(name, "If", "{function}");
        assert_eq!(branches[0].as_str(), Some("StaticEgressOn"), "{function}: under the egress condition");
        assert_eq!(reference(&branches[2]), Some("AWS::NoValue"), "{function}: no VpcConfig at all when off");
    }
    for mode in &MODES[1..] {
        let deployed = Deployed::new(&template, mode);
        let subnets = deployed.of_type("AWS::EC2::Subnet");
        let public: BTreeSet<String> = deployed
            .of_type("AWS::EC2::NatGateway")
            .into_iter()
            .chain(deployed.of_type("AWS::EC2::Instance"))
            .filter_map(|(_, nat)| reference(&nat["SubnetId"]).map(str::to_owned))
            .collect();
        assert_eq!(public.len(), 1, "{mode}: the NAT is in a subnet");
        for function in BROKER_CALLING {
            let chosen = function_subnets(&deployed, function);
            assert!(chosen.is_disjoint(&public), "{mode}: {function} runs in the NAT's public subnet");
            let zones: BTreeSet<String> = subnets
                .iter()
                .filter(|(id, _)| chosen.contains(*id))
                .map(|(_, subnet)| format!("{:?}", subnet["AvailabilityZone"]))
                .collect();
            assert_eq!(chosen.len(), 2, "{mode}: {function} runs in two private subnets");
            assert_eq!(zones.len(), 2, "{mode}: {function}'s subnets are in two zones: {zones:?}");
            let properties = deployed.resolve(&template["Resources"][*function]["Properties"]).expect("properties");
            for id in names(&properties["VpcConfig"]["SecurityGroupIds"]) {
                // The functions wait for the group, and the group for the routes: no function runs
                // in the VPC before it can reach DynamoDB and the NAT.
                let waits: BTreeSet<&str> = template["Resources"][id.as_str()]["DependsOn"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(Yaml::as_str)
                    .collect();
                for (route_id, route) in deployed.of_type("AWS::EC2::Route") {
                    if route.get("NatGatewayId").is_some() || route.get("InstanceId").is_some() {
                        assert!(waits.contains(route_id), "{mode}: {id} does not wait for {route_id}");
                    }
                }
                for (endpoint, _) in deployed.of_type("AWS::EC2::VPCEndpoint") {
                    assert!(waits.contains(endpoint), "{mode}: {id} does not wait for {endpoint}");
                }
                let group = deployed.resolve(&template["Resources"][id.as_str()]["Properties"]).expect("group");
                assert!(group.get("SecurityGroupIngress").is_none(), "{mode}: {function} admits nothing");
                for rule in group["SecurityGroupEgress"].as_sequence().expect("explicit egress rules") {
                    assert_eq!(rule["FromPort"].as_u64(), Some(443), "{mode}: {function} sends HTTPS only: {rule:?}");
                    assert_eq!(rule["ToPort"].as_u64(), Some(443), "{mode}: {function}: {rule:?}");
                }
            }
        }
    }
}

#[test]
fn the_stack_outputs_the_elastic_ip_to_register() {
    let template = template();
    for mode in MODES {
        let deployed = Deployed::new(&template, mode);
        let value = deployed.resolve(&template["Outputs"]["EgressIps"]["Value"]).expect("an EgressIps output");
        if *mode == "off" {
            let note = value.as_str().unwrap_or_else(|| panic!("off: a note, not {value:?}"));
            assert!(note.contains("off"), "off: the note says egress is off: {note}");
            continue;
        }
        let (address, _) = deployed.one("AWS::EC2::EIP");
        // `!Ref` of an AWS::EC2::EIP is its public address.
        assert_eq!(reference(&value), Some(address), "{mode}: EgressIps is the address of {address}");
    }
}
