#!/usr/bin/env python3
"""Checks that template.yaml's DynamoDB tables agree with the code's schema.

The source of truth is shared/src/store/dynamodb/schema.rs (`table_specs`, which
`create_tables` turns into CreateTable requests for DynamoDB Local and the tests). The
expected tables are written out below as a literal, and checked two ways:

1. against schema.rs: its `TableSpec { name: names.X.clone(), sort_key: B, indexes: vec![..],
   ttl: B }` lines (and the key/TTL attribute names it builds requests from) are parsed with
   regular expressions and must equal EXPECTED;
2. against template.yaml (read with cfn-lint's own YAML decoder, so `!Ref`/`!Sub` parse the
   way cfn-lint sees them): every AWS::DynamoDB::Table must have exactly the key schema,
   attribute definitions, GSIs (names, keys, KEYS_ONLY projection) and TTL that EXPECTED
   implies, plus the production settings (on-demand billing, point-in-time recovery,
   encryption, retained on delete/replace, named `${AWS::StackName}-<role>`), and the
   functions' environment must name each table.

So a change on either side without the other fails here. If schema.rs changes shape so
that the regular expressions no longer match, this fails too: update EXPECTED and the
patterns together with the template.

Also checks two JSON strings neither cfn-lint nor `sam validate` parse: the dashboard body
and the API access-log format.

And the queues against shared/src/queue/sqs.rs (`QueueUrls::from_env`): every queue URL variable
it reads is in the functions' Globals environment as `!Ref` of an AWS::SQS::Queue; each queue's
RedrivePolicy targets the queue its `*_DLQ_URL` names; every function's `BuildProperties.Binary`
is a crate in functions/; every SQS event source reports partial batch failures
(`ReportBatchItemFailures`, which the workers rely on) and polls a queue whose visibility
timeout is at least 6 x the function's timeout (AWS's advice for Lambda event sources).

And the safe deploys (after SAM's own transform, run here with the translator cfn-lint ships):
every function publishes the alias `live` through a CodeDeploy deployment group whose alarms are
that function's own Errors and Throttles alarms (AWS/Lambda, FunctionName = the function) with
rollback on alarm, for each DeploymentType; every API route, queue event source, schedule and
invoke permission names the alias, never the bare function; every function traces actively and
its role may write to X-Ray.

Usage: check_template_schema.py [template.yaml] [schema.rs]   (run from the repository root;
scripts/validate-template.sh does). Exit status 0 when everything agrees, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

try:
    from cfnlint.decode import decode_str
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("check_template_schema: cfn-lint is not importable: run scripts/setup-tools.sh "
             "and run this with .tools/py/bin/python")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SCHEMA_RS = ROOT / "shared/src/store/dynamodb/schema.rs"
SQS_RS = ROOT / "shared/src/queue/sqs.rs"
FUNCTIONS_DIR = ROOT / "functions"
# `var("ORDERS_QUEUE_URL")` in QueueUrls::from_env.
QUEUE_VAR = re.compile(r'var\("(?P<name>[A-Z_]+_(?:QUEUE|DLQ)_URL)"\)')

# Mirror of `table_specs` in shared/src/store/dynamodb/schema.rs. Keys are the roles
# (`names.<role>` there); every table has the string partition key `pk`, a string sort key
# `sk` when sort_key is true, and per index `<index>pk` (HASH) / `<index>sk` (RANGE), all
# KEYS_ONLY; TTL on attribute `ttl` (schema.rs TTL_ATTRIBUTE) when ttl is true.
EXPECTED: dict[str, dict] = {
    "customers": {"sort_key": False, "indexes": ["gsi1"], "ttl": True},
    "products": {"sort_key": False, "indexes": ["gsi1", "gsi2"], "ttl": False},
    "orders": {"sort_key": False, "indexes": ["gsi1", "gsi2", "gsi3"], "ttl": True},
}
TTL_ATTRIBUTE = "ttl"
# Template logical ids and function environment variables per role.
LOGICAL_ID = {role: f"{role.capitalize()}Table" for role in EXPECTED}
ENV_VAR = {role: f"{role.upper()}_TABLE" for role in EXPECTED}

errors: list[str] = []


def fail(message: str) -> None:
    errors.append(message)
    print(f"  FAIL {message}")


def ok(message: str) -> None:
    print(f"  ok   {message}")


# ------------------------------------------------------------------ schema.rs

SPEC_LINE = re.compile(
    r"TableSpec\s*\{\s*name:\s*names\.(?P<role>\w+)\.clone\(\)\s*,"
    r"\s*sort_key:\s*(?P<sort_key>true|false)\s*,"
    r"\s*indexes:\s*vec!\[(?P<indexes>[^\]]*)\]\s*,"
    r"\s*ttl:\s*(?P<ttl>true|false)\s*,?\s*\}"
)
# How create_tables names the attributes; if these move, EXPECTED's conventions may be stale.
SCHEMA_CONVENTIONS = {
    "TTL attribute": re.compile(r'pub const TTL_ATTRIBUTE:\s*&str\s*=\s*"(?P<v>[^"]+)"'),
    "partition key": re.compile(r'let mut key_schema = vec!\[key\("(?P<v>[^"]+)",\s*KeyType::Hash\)'),
    "sort key": re.compile(r'key_schema\.push\(key\("(?P<v>[^"]+)",\s*KeyType::Range\)'),
    "index hash key": re.compile(r'format!\("\{index\}(?P<v>\w+)"\),\s*format!\("\{index\}\w+"\)'),
    "index range key": re.compile(r'format!\("\{index\}\w+"\),\s*format!\("\{index\}(?P<v>\w+)"\)'),
    "index projection": re.compile(r"projection_type\(ProjectionType::(?P<v>\w+)\)"),
}
EXPECTED_CONVENTIONS = {
    "TTL attribute": TTL_ATTRIBUTE,
    "partition key": "pk",
    "sort key": "sk",
    "index hash key": "pk",
    "index range key": "sk",
    "index projection": "KeysOnly",
}


def check_schema_rs(source: str, label: str) -> None:
    print(f"{label} vs EXPECTED:")
    body = re.search(r"pub fn table_specs\b.*?\n\}", source, re.S)
    if not body:
        fail("no `pub fn table_specs` found in schema.rs: update this check")
        return
    body_text = body.group(0)
    specs = list(SPEC_LINE.finditer(body_text))
    if len(specs) != body_text.count("TableSpec {"):
        fail(f"table_specs has {body_text.count('TableSpec {')} `TableSpec {{` literals but only "
             f"{len(specs)} match the expected one-line shape: update this check")
    found = {}
    for m in specs:
        indexes = re.findall(r'"([^"]*)"', m.group("indexes"))
        found[m.group("role")] = {
            "sort_key": m.group("sort_key") == "true",
            "indexes": indexes,
            "ttl": m.group("ttl") == "true",
        }
        print(f"  matched {' '.join(m.group(0).split())}")
    for role in sorted(set(found) | set(EXPECTED)):
        if role not in found:
            fail(f"{role}: in EXPECTED but not in schema.rs table_specs")
        elif role not in EXPECTED:
            fail(f"{role}: in schema.rs table_specs but not in EXPECTED (and the template?)")
        elif found[role] != EXPECTED[role]:
            fail(f"{role}: schema.rs says {found[role]}, EXPECTED says {EXPECTED[role]}")
        else:
            ok(f"{role}: {found[role]}")
    for what, pattern in SCHEMA_CONVENTIONS.items():
        m = pattern.search(source)
        if not m:
            fail(f"{what}: pattern not found in schema.rs: update this check")
        elif m.group("v") != EXPECTED_CONVENTIONS[what]:
            fail(f"{what}: schema.rs uses {m.group('v')!r}, expected {EXPECTED_CONVENTIONS[what]!r}")
        else:
            ok(f"{what}: {m.group('v')!r}")


# ------------------------------------------------------------------ template.yaml

def plain(value):
    """cfn-lint's nodes (dict_node, str_node, ...) as plain Python values."""
    return json.loads(json.dumps(value, default=str))


def expected_table(spec: dict) -> dict:
    attributes = {"pk"} | ({"sk"} if spec["sort_key"] else set())
    key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if spec["sort_key"]:
        key_schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
    indexes = {}
    for index in spec["indexes"]:
        attributes |= {f"{index}pk", f"{index}sk"}
        indexes[index] = {
            "KeySchema": [
                {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    return {"attributes": attributes, "key_schema": key_schema, "indexes": indexes}


def check_table(role: str, resource: dict) -> None:
    spec = EXPECTED[role]
    want = expected_table(spec)
    props = resource.get("Properties", {})
    lid = LOGICAL_ID[role]
    before = len(errors)

    definitions = props.get("AttributeDefinitions", [])
    got_attributes = {d.get("AttributeName") for d in definitions}
    if got_attributes != want["attributes"] or len(definitions) != len(got_attributes):
        fail(f"{lid}.AttributeDefinitions: {sorted(got_attributes)} (want exactly {sorted(want['attributes'])})")
    for d in definitions:
        if d.get("AttributeType") != "S":
            fail(f"{lid}.AttributeDefinitions: {d.get('AttributeName')} has type {d.get('AttributeType')}, want S")

    if props.get("KeySchema") != want["key_schema"]:
        fail(f"{lid}.KeySchema: {props.get('KeySchema')} (want {want['key_schema']})")

    got_indexes = {}
    for gsi in props.get("GlobalSecondaryIndexes", []):
        name = gsi.get("IndexName")
        if name in got_indexes:
            fail(f"{lid}: index {name} declared twice")
        got_indexes[name] = {k: v for k, v in gsi.items() if k != "IndexName"}
    if sorted(got_indexes) != sorted(want["indexes"]):
        fail(f"{lid}.GlobalSecondaryIndexes: {sorted(got_indexes)} (want {sorted(want['indexes'])})")
    for name, gsi in want["indexes"].items():
        if name in got_indexes and got_indexes[name] != gsi:
            fail(f"{lid}.{name}: {got_indexes[name]} (want {gsi})")
    if props.get("LocalSecondaryIndexes"):
        fail(f"{lid}: has LocalSecondaryIndexes; schema.rs declares none")

    ttl = props.get("TimeToLiveSpecification")
    if spec["ttl"]:
        if ttl != {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}:
            fail(f"{lid}.TimeToLiveSpecification: {ttl} (want AttributeName {TTL_ATTRIBUTE}, Enabled true)")
    elif ttl and ttl.get("Enabled") is not False:
        fail(f"{lid}.TimeToLiveSpecification: {ttl} (schema.rs has no TTL on {role})")

    # Production settings the brief asks for on every table.
    if props.get("TableName") != {"Fn::Sub": f"${{AWS::StackName}}-{role}"}:
        fail(f"{lid}.TableName: {props.get('TableName')} (want !Sub ${{AWS::StackName}}-{role}, "
             f"which matches the code's default orderly-{role} for a stack named orderly)")
    if props.get("BillingMode") != "PAY_PER_REQUEST":
        fail(f"{lid}.BillingMode: {props.get('BillingMode')} (want PAY_PER_REQUEST)")
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is not True:
        fail(f"{lid}: point-in-time recovery is not enabled")
    if props.get("SSESpecification", {}).get("SSEEnabled") is not True:
        fail(f"{lid}: SSESpecification.SSEEnabled is not true")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        if resource.get(policy) != "Retain":
            fail(f"{lid}.{policy}: {resource.get(policy)} (want Retain)")

    if len(errors) == before:
        ok(f"{lid}: key {[k['AttributeName'] for k in want['key_schema']]}, "
           f"indexes {sorted(want['indexes'])} KEYS_ONLY, "
           f"TTL {repr(TTL_ATTRIBUTE) if spec['ttl'] else 'off'}, on-demand, PITR, SSE, Retain")


def check_template(template: dict, label: str) -> None:
    print(f"{label} vs EXPECTED:")
    resources = template.get("Resources", {})
    tables = {lid for lid, r in resources.items() if r.get("Type") == "AWS::DynamoDB::Table"}
    for lid in sorted(tables - set(LOGICAL_ID.values())):
        fail(f"{lid}: a table the code (schema.rs table_specs) does not know")
    for role, lid in LOGICAL_ID.items():
        if lid not in tables:
            fail(f"{lid}: missing (the {role} table of schema.rs)")
        else:
            check_table(role, resources[lid])

    variables = (template.get("Globals", {}).get("Function", {})
                 .get("Environment", {}).get("Variables", {}))
    for role, var in ENV_VAR.items():
        if variables.get(var) != {"Ref": LOGICAL_ID[role]}:
            fail(f"Globals.Function.Environment.{var}: {variables.get(var)} (want !Ref {LOGICAL_ID[role]})")
        else:
            ok(f"Globals.Function.Environment.{var} = !Ref {LOGICAL_ID[role]}")

    print(f"{label} JSON strings:")
    for lid, r in resources.items():
        props = r.get("Properties", {})
        if r.get("Type") == "AWS::CloudWatch::Dashboard":
            body = props.get("DashboardBody")
            if isinstance(body, dict) and "Fn::Sub" in body:
                body = body["Fn::Sub"]
                body = body[0] if isinstance(body, list) else body
                body = re.sub(r"\$\{[^}]+\}", "x", body)
            try:
                widgets = json.loads(body)["widgets"]
                ok(f"{lid}.DashboardBody: valid JSON, {len(widgets)} widgets")
            except (ValueError, TypeError, KeyError) as e:
                fail(f"{lid}.DashboardBody is not a valid dashboard JSON: {e}")
        if r.get("Type") == "AWS::Serverless::HttpApi" and "AccessLogSettings" in props:
            fmt = props["AccessLogSettings"].get("Format")
            try:
                fields = json.loads(fmt)
                ok(f"{lid}.AccessLogSettings.Format: valid JSON, {len(fields)} fields")
            except (ValueError, TypeError) as e:
                fail(f"{lid}.AccessLogSettings.Format is not valid JSON: {e}")


def check_queues(template: dict, sqs_rs: str) -> None:
    print("template.yaml queues and functions vs shared/src/queue/sqs.rs and functions/:")
    resources = template.get("Resources", {})
    variables = (template.get("Globals", {}).get("Function", {})
                 .get("Environment", {}).get("Variables", {}))
    names = sorted(set(QUEUE_VAR.findall(sqs_rs)))
    if len(names) < 2:
        fail("shared/src/queue/sqs.rs: found no var(\"*_QUEUE_URL\") / var(\"*_DLQ_URL\") reads; update QUEUE_VAR")
    queue_of: dict[str, str] = {}
    for name in names:
        ref = variables.get(name)
        lid = ref.get("Ref") if isinstance(ref, dict) else None
        if resources.get(lid, {}).get("Type") != "AWS::SQS::Queue":
            fail(f"Globals.Function.Environment.{name}: {ref} (want !Ref of an AWS::SQS::Queue)")
        else:
            queue_of[name] = lid
            ok(f"Globals.Function.Environment.{name} = !Ref {lid}")
    for name, lid in queue_of.items():
        if not name.endswith("_QUEUE_URL"):
            continue
        dlq = queue_of.get(name.replace("_QUEUE_URL", "_DLQ_URL"))
        redrive = resources[lid].get("Properties", {}).get("RedrivePolicy", {})
        target = redrive.get("deadLetterTargetArn")
        if dlq is None or target != {"Fn::GetAtt": [dlq, "Arn"]}:
            fail(f"{lid}.RedrivePolicy.deadLetterTargetArn: {target} (want !GetAtt {dlq}.Arn)")
        else:
            ok(f"{lid} redrives to {dlq} after {redrive.get('maxReceiveCount')} receives")

    global_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    crates = {p.name for p in FUNCTIONS_DIR.iterdir() if (p / "Cargo.toml").is_file()} if FUNCTIONS_DIR.is_dir() else set()
    for lid, r in resources.items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if binary not in crates:
            fail(f"{lid}.Metadata.BuildProperties.Binary: {binary!r} is not a crate in functions/ ({sorted(crates)})")
        props = r.get("Properties", {})
        timeout = props.get("Timeout", global_timeout)
        for event_id, event in props.get("Events", {}).items():
            if event.get("Type") != "SQS":
                continue
            where = f"{lid}.Events.{event_id}"
            ev = event.get("Properties", {})
            if "ReportBatchItemFailures" not in ev.get("FunctionResponseTypes", []):
                fail(f"{where}: FunctionResponseTypes lacks ReportBatchItemFailures (the workers answer partial batch failures)")
            queue = ev.get("Queue")
            qid = queue.get("Fn::GetAtt", [None])[0] if isinstance(queue, dict) else None
            if resources.get(qid, {}).get("Type") != "AWS::SQS::Queue":
                fail(f"{where}.Queue: {queue} (want !GetAtt <queue>.Arn)")
                continue
            visibility = resources[qid].get("Properties", {}).get("VisibilityTimeout", 30)
            if not (isinstance(visibility, int) and isinstance(timeout, int) and visibility >= 6 * timeout):
                fail(f"{where}: {qid}.VisibilityTimeout {visibility} s < 6 x the function's Timeout {timeout} s")
            else:
                ok(f"{where}: {binary} polls {qid} (visibility {visibility} s >= 6 x {timeout} s), partial batch failures")


# ------------------------------------------------------------------ safe deploys

ALIAS = "live"
# Values of the DeploymentType parameter checked through the transform: the default (prod's
# canary) and the dev environment's.
DEPLOYMENT_TYPES = ("Canary10Percent5Minutes", "AllAtOnce")


def sam_transform(template: dict, parameters: dict) -> dict | None:
    """template.yaml as CloudFormation sees it after the AWS::Serverless transform, or None."""
    try:
        from samtranslator.translator.transform import transform
    except ImportError:
        fail("samtranslator (a cfn-lint dependency) is not importable: run scripts/setup-tools.sh")
        return None

    class NoManagedPolicies:  # the template names managed policies by ARN only
        def load(self):
            return {}

    # The translator resolves pseudo parameters through a boto session: it needs a region.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = json.loads(json.dumps(template))
    for r in template.get("Resources", {}).values():
        if r.get("Type") == "AWS::Serverless::Function":
            # A local CodeUri is what `sam build`/`package` replace; the translator wants S3.
            r.setdefault("Properties", {})["CodeUri"] = "s3://bucket/key"
    try:
        return transform(template, parameters, NoManagedPolicies())
    except Exception as e:  # the translator raises several exception types
        fail(f"SAM transform with {parameters}: {e}")
        return None


def refers_to(value, logical_id: str) -> bool:
    """Whether a CloudFormation value references the resource logical_id itself."""
    text = json.dumps(value)
    return (f'{{"Ref": "{logical_id}"}}' in text or f'["{logical_id}", "Arn"]' in text
            or f"${{{logical_id}}}" in text or f"${{{logical_id}.Arn}}" in text)


def check_deployments(template: dict) -> None:
    print("template.yaml safe deploys (aliases, deployment groups, rollback alarms, tracing):")
    resources = template.get("Resources", {})
    functions = [lid for lid, r in resources.items() if r.get("Type") == "AWS::Serverless::Function"]
    for lid in functions:
        stem = lid.removesuffix("Function")
        for kind in ("Errors", "Throttles"):
            alarm = resources.get(f"{stem}{kind}Alarm", {}).get("Properties", {})
            dims = alarm.get("Dimensions", [])
            if (alarm.get("Namespace"), alarm.get("MetricName")) != ("AWS/Lambda", kind) or dims != [
                {"Name": "FunctionName", "Value": {"Ref": lid}}
            ]:
                fail(f"{stem}{kind}Alarm: missing, or not AWS/Lambda {kind} of FunctionName = !Ref {lid}")
    for deployment_type in DEPLOYMENT_TYPES:
        out = sam_transform(template, {"MailFrom": "orders@example.com", "DeploymentType": deployment_type})
        if out is None:
            continue
        res = out.get("Resources", {})
        wanted_config = {"Fn::Sub": ["CodeDeployDefault.Lambda${ConfigName}", {"ConfigName": deployment_type}]}
        for lid in functions:
            stem = lid.removesuffix("Function")
            alias, group = f"{lid}Alias{ALIAS}", f"{lid}DeploymentGroup"
            update = res.get(alias, {}).get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate", {})
            if update.get("DeploymentGroupName") != {"Ref": group}:
                fail(f"{lid}: no alias {ALIAS!r} updated through CodeDeploy ({deployment_type})")
                continue
            props = res.get(group, {}).get("Properties", {})
            alarms = [a.get("Name") for a in props.get("AlarmConfiguration", {}).get("Alarms", [])]
            want = [{"Ref": f"{stem}ErrorsAlarm"}, {"Ref": f"{stem}ThrottlesAlarm"}]
            rollback = props.get("AutoRollbackConfiguration", {})
            if not props.get("AlarmConfiguration", {}).get("Enabled") or sorted(map(json.dumps, alarms)) != sorted(
                map(json.dumps, want)
            ):
                fail(f"{group}: alarms {alarms} (want {stem}ErrorsAlarm and {stem}ThrottlesAlarm)")
            elif "DEPLOYMENT_STOP_ON_ALARM" not in rollback.get("Events", []) or not rollback.get("Enabled"):
                fail(f"{group}: no automatic rollback on alarm")
            elif props.get("DeploymentConfigName") != wanted_config:
                fail(f"{group}: DeploymentConfigName {props.get('DeploymentConfigName')} (want {deployment_type})")
            else:
                ok(f"{lid}: alias {ALIAS!r}, {deployment_type}, rolls back on {stem}ErrorsAlarm/{stem}ThrottlesAlarm")
            function = res.get(lid, {}).get("Properties", {})
            role = res.get(f"{lid}Role", {}).get("Properties", {})
            xray = any(str(arn).endswith(":policy/AWSXrayWriteOnlyAccess") for arn in role.get("ManagedPolicyArns", []))
            if function.get("TracingConfig") != {"Mode": "Active"} or not xray:
                fail(f"{lid}: not traced actively, or its role lacks AWSXrayWriteOnlyAccess")
        # Whatever invokes a function must name its alias: the bare function is $LATEST.
        callers = 0
        for rid, r in res.items():
            props = r.get("Properties", {})
            if r.get("Type") in ("AWS::Lambda::EventSourceMapping", "AWS::Lambda::Permission"):
                target = props.get("FunctionName")
            elif r.get("Type") == "AWS::Events::Rule":
                target = [t.get("Arn") for t in props.get("Targets", [])]
            elif r.get("Type") == "AWS::ApiGatewayV2::Api":
                target = props.get("Body", {}).get("paths", {})
            else:
                continue
            callers += 1
            for lid in functions:
                if refers_to(target, lid):
                    fail(f"{rid} ({r['Type']}) invokes {lid} itself, not its alias {ALIAS!r}")
        ok(f"{callers} invokers (API routes, event sources, schedule, permissions) all name aliases ({deployment_type})")


def main() -> int:
    template_path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    schema_path = Path(sys.argv[2]) if len(sys.argv) > 2 else SCHEMA_RS
    for path in (template_path, schema_path):
        if not path.is_file():
            print(f"check_template_schema: {path} not found", file=sys.stderr)
            return 1

    check_schema_rs(schema_path.read_text(encoding="utf-8"), str(schema_path))

    template, matches = decode_str(template_path.read_text(encoding="utf-8"))
    if matches or template is None:
        for match in matches:
            fail(f"{template_path.name}: {match}")
        fail(f"{template_path.name} could not be parsed")
    else:
        check_template(plain(template), str(template_path))
        if SQS_RS.is_file():
            check_queues(plain(template), SQS_RS.read_text(encoding="utf-8"))
        else:
            fail(f"{SQS_RS} not found")
        check_deployments(plain(template))

    if errors:
        print(f"\ncheck_template_schema: {len(errors)} problem(s): template.yaml, schema.rs and "
              f"EXPECTED in scripts/check_template_schema.py must agree", file=sys.stderr)
        return 1
    print("\ncheck_template_schema: template.yaml agrees with schema.rs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
