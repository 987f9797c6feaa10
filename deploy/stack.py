"""Generate the CloudFormation stack, ``deploy/stack.template.json``, from the deploy/ JSON files.

The JSON files stay the one source: each is what one AWS API call takes (the step-by-step in
docs/deploy.md), and this module turns each into the CloudFormation resource that makes that call,
so the stack and the files cannot say different things (``check`` fails CI when the committed
template is not what the files give):

- ``${ACCOUNT_ID}`` and ``${REGION}`` become ``${AWS::AccountId}`` and ``${AWS::Region}`` in an
  ``Fn::Sub``; ``${BUCKET}`` and ``${DATABASE_URL_PARAMETER}`` the stack's parameters of those values;
- the ARN of a resource the stack creates becomes a ``Ref``/``Fn::GetAtt`` of it, so that
  CloudFormation creates things in order (the job queue after its compute environments);
- the image, the subnets and the security groups become parameters, and so does ``maxvCpus``
  (default: the files' value); the Batch API's camelCase keys become CloudFormation's PascalCase;
- with ``UseSpot=false`` the Spot compute environment is left out and the queue keeps on-demand only;
  without ``DispatcherDatabaseUrl`` the stale-run schedule is left out (the sweep reads the database).

Added here because no AWS call of the step-by-step holds them: the instance role and profile of
the compute environments (the step-by-step uses the account's ``ecsInstanceRole``), the two log
groups' retention, the Lambda's code location and, when ``DispatcherDatabaseUrl`` is given, its
``DATABASE_URL``, VPC placement and VPC-access policy (the videos-table lookup and the sweep need
the database).

Usage (from the repository root)::

    python deploy/stack.py write     # rewrite deploy/stack.template.json
    python deploy/stack.py check     # exit 1 if the committed template is stale
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
TEMPLATE = DEPLOY / "stack.template.json"
# deploy/render.py's placeholders -> what Fn::Sub knows them as in the stack
SUB_NAMES = {
    "ACCOUNT_ID": "AWS::AccountId",
    "REGION": "AWS::Region",
    "BUCKET": "Bucket",
    "DATABASE_URL_PARAMETER": "DatabaseUrlParameter",
}
LIST_PARAMETERS = {"${SUBNET_ID}": "Subnets", "${SECURITY_GROUP_ID}": "SecurityGroupIds"}
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
FREE_FORM_KEYS = {"tags", "options"}  # Batch maps whose own keys are data, not property names
LOG_RETENTION_DAYS = 30
DATABASE_URL_ENV = "DATABASE_URL"  # what analyzer.fleet.dispatch reads
INSTANCE_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
VPC_ACCESS_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
SPOT_ON = "SpotOn"  # condition names
DISPATCHER_DATABASE = "DispatcherReadsDatabase"
CUSTOM_SERVICE_ROLE = "CustomBatchServiceRole"
NO_VALUE = {"Ref": "AWS::NoValue"}


def read(relative: str) -> Any:
    return json.loads((DEPLOY / relative).read_text(encoding="utf-8"))


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn_of(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def when(condition: str, value: Any) -> dict[str, list[Any]]:
    """``value`` when ``condition`` holds, else nothing (the property or list item is left out)."""
    return {"Fn::If": [condition, value, NO_VALUE]}


def tail(arn: str) -> str:
    """The name at the end of an ARN (``...:role/NAME``, ``...:sqs:...:NAME``)."""
    return re.split(r"[:/]", arn)[-1]


def pascal(value: Any) -> Any:
    """The Batch API's camelCase keys as CloudFormation's PascalCase, free-form maps kept."""
    if isinstance(value, list):
        return [pascal(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {key[:1].upper() + key[1:]: (item if key in FREE_FORM_KEYS else pascal(item)) for key, item in value.items()}


def cfn(value: Any, links: Mapping[str, Any]) -> Any:
    """A file's value in the stack: linked strings, list parameters, else ``Fn::Sub`` of placeholders.

    ValueError for a placeholder the stack has no value for (``${IMAGE_TAG}`` outside the image).
    """
    if isinstance(value, str):
        if value in links:
            return links[value]
        names = set(_PLACEHOLDER.findall(value))
        if not names:
            return value
        if names - set(SUB_NAMES):
            raise ValueError(f"{value!r}: the stack has no value for {sorted(names - set(SUB_NAMES))}")
        return {"Fn::Sub": _PLACEHOLDER.sub(lambda m: "${" + SUB_NAMES[m.group(1)] + "}", value)}
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], str) and value[0] in LIST_PARAMETERS:
            return ref(LIST_PARAMETERS[value[0]])
        return [cfn(item, links) for item in value]
    if isinstance(value, dict):
        return {key: cfn(item, links) for key, item in value.items()}
    return value


def batch_arn(kind: str, name: str) -> str:
    return f"arn:aws:batch:${{REGION}}:${{ACCOUNT_ID}}:{kind}/{name}"


COMPUTE_ENVIRONMENTS = {  # logical id -> file; the queue's order comes from job-queue.json
    "SpotComputeEnvironment": "batch/compute-environment-spot.json",
    "OnDemandComputeEnvironment": "batch/compute-environment-ondemand.json",
}


def links() -> dict[str, Any]:
    """Strings of the files that name something the stack creates -> a reference to it."""
    container = read("batch/job-definition.json")["containerProperties"]
    dispatcher = read("lambda/dispatcher.json")
    dead_letter = json.loads(read("sqs/queue-attributes.json")["RedrivePolicy"])["deadLetterTargetArn"]
    found: dict[str, Any] = {
        container["image"]: ref("ImageUri"),
        container["jobRoleArn"]: arn_of("JobRole"),
        container["executionRoleArn"]: arn_of("ExecutionRole"),
        dispatcher["Role"]: arn_of("DispatcherRole"),
        read("lambda/event-source-mapping.json")["EventSourceArn"]: arn_of("UploadQueue"),
        dead_letter: arn_of("DeadLetterQueue"),
        read("events/sweep-targets.json")["Targets"][0]["Arn"]: arn_of("DispatcherFunction"),
        read("events/sweep-permission.json")["SourceArn"]: arn_of("SweepSchedule"),
    }
    for logical_id, path in COMPUTE_ENVIRONMENTS.items():
        environment = read(path)
        found[batch_arn("compute-environment", environment["computeEnvironmentName"])] = ref(logical_id)
        found[environment["computeResources"]["instanceRole"]] = arn_of("InstanceProfile")
    for path in sorted((DEPLOY / "cloudwatch").glob("*.json")):
        for action in read(f"cloudwatch/{path.name}").get("AlarmActions", []):
            found[action] = ref("PagerTopic")
    return found


def parameters() -> dict[str, Any]:
    max_vcpus = read("batch/compute-environment-ondemand.json")["computeResources"]["maxvCpus"]
    return {
        "Bucket": {
            "Type": "String",
            "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            "Description": "The existing bucket the uploads arrive in (videos/ and manifests/ are read)",
        },
        "ImageUri": {
            "Type": "String",
            "Description": "The worker image, pushed to this account's video-analyzer ECR repository (the only"
            " one the execution role may pull from), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
            "video-analyzer:1.0.0",
        },
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets of the GPU instances (and of the dispatcher when it reads the database),"
            " with a route to ECR, S3, CloudWatch Logs, SSM, Batch, SQS and the database",
        },
        "SecurityGroupIds": {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups with outbound 443 and the database port",
        },
        "DatabaseUrlParameter": {
            "Type": "String",
            "Default": "/video-analyzer/database-url",
            "AllowedPattern": "^/[A-Za-z0-9_./-]+$",
            "Description": "Name of the SSM SecureString holding the worker's DATABASE_URL (created beforehand)",
        },
        "MaxvCpus": {
            "Type": "Number",
            "Default": str(max_vcpus),
            "MinValue": 4,
            "Description": "vCPUs each compute environment may run: 4 per video at once",
        },
        "UseSpot": {
            "Type": "String",
            "AllowedValues": ["true", "false"],
            "Default": "true",
            "Description": "true: Spot instances first, on-demand when Spot has none; false: on-demand only",
        },
        "BatchServiceRole": {
            "Type": "String",
            "Default": "",
            "Description": "ARN of a custom AWS Batch service role; empty (recommended): Batch's service-linked role",
        },
        "DispatcherCodeBucket": {"Type": "String", "Description": "Bucket holding the dispatcher's Lambda zip"},
        "DispatcherCodeKey": {
            "Type": "String",
            "Description": "Key of the zip (deploy/package-dispatcher.sh); a new key updates the function",
        },
        "DispatcherDatabaseUrl": {
            "Type": "String",
            "NoEcho": True,
            "Default": "",
            "Description": "DATABASE_URL for the dispatcher (videos-table lookup, stale-run sweep); empty: neither."
            " Puts the Lambda in the subnets above; package it with --with-psycopg",
        },
    }


def conditions() -> dict[str, Any]:
    return {
        SPOT_ON: {"Fn::Equals": [ref("UseSpot"), "true"]},
        CUSTOM_SERVICE_ROLE: {"Fn::Not": [{"Fn::Equals": [ref("BatchServiceRole"), ""]}]},
        DISPATCHER_DATABASE: {"Fn::Not": [{"Fn::Equals": [ref("DispatcherDatabaseUrl"), ""]}]},
    }


def role(trust: str, policy: str, role_arn: str, links: Mapping[str, Any]) -> dict[str, Any]:
    name = tail(role_arn)
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "AssumeRolePolicyDocument": cfn(read(trust), links),
            "Policies": [{"PolicyName": name, "PolicyDocument": cfn(read(policy), links)}],
        },
    }


def roles(links: Mapping[str, Any]) -> dict[str, Any]:
    container = read("batch/job-definition.json")["containerProperties"]
    dispatcher = role(
        "iam/trust-lambda.json", "iam/dispatcher-policy.json", read("lambda/dispatcher.json")["Role"], links
    )
    # in the VPC (to reach the database) Lambda needs network interfaces: AWS's policy for exactly that
    dispatcher["Properties"]["ManagedPolicyArns"] = when(DISPATCHER_DATABASE, [{"Fn::Sub": VPC_ACCESS_POLICY}])
    return {
        "JobRole": role("iam/trust-ecs-tasks.json", "iam/job-role-policy.json", container["jobRoleArn"], links),
        "ExecutionRole": role(
            "iam/trust-ecs-tasks.json", "iam/execution-role-policy.json", container["executionRoleArn"], links
        ),
        "DispatcherRole": dispatcher,
        "InstanceRole": {  # the ECS agent on the GPU instances, as ecsInstanceRole in the step-by-step
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": cfn(read("iam/trust-ec2.json"), links),
                "ManagedPolicyArns": [{"Fn::Sub": INSTANCE_POLICY}],
            },
        },
        "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {"Roles": [ref("InstanceRole")]}},
    }


def batch(links: Mapping[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for logical_id, path in COMPUTE_ENVIRONMENTS.items():
        properties = cfn(pascal(read(path)), links)
        properties["ComputeResources"]["MaxvCpus"] = ref("MaxvCpus")
        properties["ServiceRole"] = when(CUSTOM_SERVICE_ROLE, ref("BatchServiceRole"))
        resources[logical_id] = {"Type": "AWS::Batch::ComputeEnvironment", "Properties": properties}
    resources["SpotComputeEnvironment"] = {"Condition": SPOT_ON, **resources["SpotComputeEnvironment"]}
    queue = cfn(pascal(read("batch/job-queue.json")), links)
    order = queue["ComputeEnvironmentOrder"]
    unknown = [item["ComputeEnvironment"] for item in order if "Ref" not in item["ComputeEnvironment"]]
    if unknown:
        raise ValueError(f"job-queue.json names compute environments no file creates: {unknown}")
    spot = ref("SpotComputeEnvironment")
    without_spot = [item for item in order if item["ComputeEnvironment"] != spot]
    queue["ComputeEnvironmentOrder"] = {"Fn::If": [SPOT_ON, order, without_spot]}
    resources["JobQueue"] = {"Type": "AWS::Batch::JobQueue", "Properties": queue}
    resources["JobDefinition"] = {
        "Type": "AWS::Batch::JobDefinition",
        "Properties": cfn(pascal(read("batch/job-definition.json")), links),
    }
    return resources


def log_group(name: str) -> dict[str, Any]:
    return {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": name, "RetentionInDays": LOG_RETENTION_DAYS}}


def queues(links: Mapping[str, Any]) -> dict[str, Any]:
    attributes = read("sqs/queue-attributes.json")
    redrive = json.loads(attributes["RedrivePolicy"])
    upload_arn = read("lambda/event-source-mapping.json")["EventSourceArn"]
    numbers = {name: int(value) for name, value in attributes.items() if name not in ("RedrivePolicy", "Policy")}
    return {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": tail(redrive["deadLetterTargetArn"]),
                "MessageRetentionPeriod": numbers["MessageRetentionPeriod"],
            },
        },
        "UploadQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": tail(upload_arn),
                **numbers,
                "RedrivePolicy": {
                    "deadLetterTargetArn": links[redrive["deadLetterTargetArn"]],
                    "maxReceiveCount": int(redrive["maxReceiveCount"]),
                },
            },
        },
        "UploadQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref("UploadQueue")],
                "PolicyDocument": cfn(json.loads(attributes["Policy"]), links),
            },
        },
    }


def same_function(path: str, name: str) -> None:
    if read(path)["FunctionName"] != name:
        raise ValueError(f"{path} names function {read(path)['FunctionName']!r}, not {name!r}")


def dispatcher(links: Mapping[str, Any]) -> dict[str, Any]:
    function = read("lambda/dispatcher.json")
    properties = cfn({key: value for key, value in function.items() if key != "Tags"}, links)
    properties["Tags"] = [{"Key": key, "Value": value} for key, value in function.get("Tags", {}).items()]
    properties["Code"] = {"S3Bucket": ref("DispatcherCodeBucket"), "S3Key": ref("DispatcherCodeKey")}
    properties["Environment"]["Variables"][DATABASE_URL_ENV] = when(DISPATCHER_DATABASE, ref("DispatcherDatabaseUrl"))
    vpc = {"SubnetIds": ref("Subnets"), "SecurityGroupIds": ref("SecurityGroupIds")}
    properties["VpcConfig"] = when(DISPATCHER_DATABASE, vpc)
    same_function("lambda/event-source-mapping.json", function["FunctionName"])
    mapping = cfn(read("lambda/event-source-mapping.json"), links)
    mapping["FunctionName"] = ref("DispatcherFunction")
    return {
        "DispatcherLogGroup": log_group(f"/aws/lambda/{function['FunctionName']}"),
        "DispatcherFunction": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": "DispatcherLogGroup",  # its retention, not one Lambda would create without
            "Properties": properties,
        },
        "DispatcherEventSource": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": mapping},
    }


def sweep(links: Mapping[str, Any]) -> dict[str, Any]:
    rule = read("events/sweep-rule.json")
    targets = read("events/sweep-targets.json")
    if targets["Rule"] != rule["Name"]:
        raise ValueError(f"sweep-targets.json targets rule {targets['Rule']!r}, not {rule['Name']!r}")
    same_function("events/sweep-permission.json", read("lambda/dispatcher.json")["FunctionName"])
    permission = cfn({k: v for k, v in read("events/sweep-permission.json").items() if k != "StatementId"}, links)
    permission["FunctionName"] = arn_of("DispatcherFunction")
    return {
        "SweepSchedule": {
            "Type": "AWS::Events::Rule",
            "Condition": DISPATCHER_DATABASE,  # the sweep reads video_analyses: no database, no sweep
            "Properties": {**cfn(rule, links), "Targets": cfn(targets["Targets"], links)},
        },
        "SweepPermission": {
            "Type": "AWS::Lambda::Permission",
            "Condition": DISPATCHER_DATABASE,
            "Properties": permission,
        },
    }


def alarms(links: Mapping[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for path in sorted((DEPLOY / "cloudwatch").glob("*.json")):
        logical_id = "".join(part.title() for part in path.stem.split("-"))  # duplicate-alarm -> DuplicateAlarm
        resources[logical_id] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": cfn(read(f"cloudwatch/{path.name}"), links),
        }
    return resources


def build() -> dict[str, Any]:
    """The whole template, from the files."""
    found = links()
    topic = next(arn for arn, target in found.items() if target == ref("PagerTopic"))
    resources: dict[str, Any] = {
        **roles(found),
        "BatchLogGroup": log_group(
            read("batch/job-definition.json")["containerProperties"]["logConfiguration"]["options"]["awslogs-group"]
        ),
        **batch(found),
        **queues(found),
        **dispatcher(found),
        **sweep(found),
        "PagerTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": tail(topic)}},
        **alarms(found),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "video-analyzer: GPU worker on AWS Batch (Spot first, then on-demand), the upload queue,"
        " the dispatcher Lambda and its stale-run schedule, alarms. Generated by deploy/stack.py from the"
        " deploy/ JSON files: edit those, then run python deploy/stack.py write.",
        "Parameters": parameters(),
        "Conditions": conditions(),
        "Resources": resources,
        "Outputs": {
            "UploadQueueArn": {
                "Description": "Point the bucket's notification here (docs/deploy.md)",
                "Value": arn_of("UploadQueue"),
            },
            "JobQueueArn": {"Value": ref("JobQueue")},
            "PagerTopicArn": {"Description": "Subscribe your pager or e-mail", "Value": ref("PagerTopic")},
            "DispatcherFunctionArn": {"Value": arn_of("DispatcherFunction")},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def check(path: Path = TEMPLATE) -> list[str]:
    """What is wrong with the committed template (empty: it is what the files give)."""
    if not path.is_file():
        return [f"{path} is missing; run: python deploy/stack.py write"]
    if path.read_text(encoding="utf-8") != render():
        return [f"{path} is not what the deploy/ files give; run: python deploy/stack.py write"]
    return []


def write(path: Path = TEMPLATE) -> None:
    path.write_text(render(), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["write"]:
        write()
        return 0
    if args == ["check"]:
        problems = check()
        for line in problems:
            sys.stderr.write(line + "\n")
        return 1 if problems else 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
