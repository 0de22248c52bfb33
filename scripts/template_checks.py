"""Offline checks of template.yaml that cfn-lint and sam validate do not make, on the
template as CloudFormation receives it (after SAM's transform, run here with samtranslator,
no AWS credentials), and of the GitHub workflows and samconfig.toml around it.

    python scripts/template_checks.py transform OUT.json [TEMPLATE]   SAM-transformed
                                                    template.yaml (or TEMPLATE)
    python scripts/template_checks.py check OUT.json       the checks below on it
    python scripts/template_checks.py example OUT.json     the example's checks (below) on
                                                    its transformed template
    python scripts/template_checks.py checkov REPORT.json... summary of checkov's JSON reports

Run by scripts/check-template.sh in the project venv (samtranslator comes with aws-sam-cli,
PyYAML with both). Exits non-zero with one line per finding.

The checks (the issue each one keeps fixed is named in its docstring):
- deletion order: MigrationRun (a custom resource answered by the migrate function from
  inside the VPC) depends, directly or transitively, on every resource its answer and its
  work need in the VPC; likewise every secret-rotation schedule on the Secrets Manager
  endpoint. A self-test removes MigrationRun's Metadata and expects the check to fail;
- VpcCidr's pattern admits exactly the prefixes from which its subnets can be cut;
- the interface endpoints are only those with a caller, SES only with MailFrom;
- mail: every function whose crate enables the `ses` cargo feature (functions/*/Cargo.toml)
  has MAIL_BACKEND=ses, SMTP_FROM, PUBLIC_BASE_URL, SendEmail/SendRawEmail on the MailFrom
  identity only (with MailFrom; no SES grant without) and a security group the SES endpoint
  admits; no other function has any SES grant or MAIL_BACKEND=ses;
- the private JWT signing keys (JwtKeysSecret): exactly login, login-mfa and refresh have
  JWT_KEYS_SECRET_ARN and a grant on the secret, rotate-keys a grant, no other role one;
- the TOTP encryption keys (MfaKeysSecret): exactly mfa-setup, mfa-confirm, mfa-disable and
  login-mfa have MFA_KEYS_SECRET_ARN and a grant on the secret, no other role has one (nor a
  secretsmanager grant on "*"); its first value is generated, with "current" naming that key;
- ADMIN_REQUIRES_MFA reaches the authorizer and every admin route's function (ENDPOINTS
  with Access::Admin), and no other function;
- the database logins: only the migrate function has and may read the master secret; every
  other function (and RDS Proxy) reads DatabaseRuntimeSecret, generated for the runtime
  role and rotated (hosted PostgreSQLSingleUser) after MigrationRun; with a self-test;
- every secret of the template is one the CloudFormation execution role of
  deploy/bootstrap.yaml may create;
- the RDS log exports go to a log group of this stack, with a retention; a major version
  parameter comes with AllowMajorVersionUpgrade;
- CORS allows and exposes the request-id header the service reads and echoes;
- timeouts: SAM's wait (samconfig max_wait_duration) > CloudFormation's longest resource
  wait here (MigrationRun's ServiceTimeout), and each deploy job's timeout > SAM's wait;
- the workflows: every action pinned to a commit SHA with its version in a comment, the
  deploy jobs only on main after the tests, one concurrency group per environment, prod
  through a change set created with --no-execute-changeset.

The example of another API behind the authorizer (examples/protected-api, `example`): its
template's routes, the routes of its route-rules.json beyond this service's own, and the
route table of its function are the same three; every route has the imported authorizer;
and nothing but its API can invoke the function (no function URL, every invoke permission
for API Gateway from that API), since the function believes the authorizer's context.
"""

from __future__ import annotations

import ipaddress
import json
import math
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "user-service-check",
    "AWS::URLSuffix": "amazonaws.com",
}


# --- SAM transform -----------------------------------------------------------------------
def transform(template_path: pathlib.Path) -> dict:
    """template.yaml as CloudFormation sees it after AWS::Serverless-2016-10-31. Local
    CodeUri folders become placeholder S3 URIs (as `sam validate` does); the functions'
    Metadata (checkov suppressions) is carried to the resources generated from them."""
    from samtranslator.translator.transform import transform as sam_transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        """Managed policies by name: this template names none (SAM's own defaults, such as
        AWSLambdaBasicExecutionRole, are ARNs it builds itself)."""

        def load(self):
            return {}

    template = yaml_parse(template_path.read_text())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            code = resource["Properties"].get("CodeUri", "")
            if isinstance(code, str) and not code.startswith("s3://"):
                resource["Properties"]["CodeUri"] = f"s3://placeholder-bucket/{code}.zip"
    return sam_transform(template, dict(PSEUDO), NoManagedPolicies(), passthrough_metadata=True)


# --- conditions and references ----------------------------------------------------------
class Scenario:
    """Parameter values (defaults unless overridden) and the conditions they give."""

    def __init__(self, template: dict, overrides: dict | None = None):
        self.template = template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(overrides or {})
        self._conditions: dict[str, bool] = {}

    def value(self, node):
        if isinstance(node, dict) and "Ref" in node:
            name = node["Ref"]
            return self.params[name] if name in self.params else PSEUDO.get(name, name)
        if isinstance(node, (str, int, float, bool)):
            return str(node)
        raise ValueError(f"cannot evaluate {node!r} in a condition")

    def truth(self, node) -> bool:
        if isinstance(node, dict):
            (fn, arg), = node.items()
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.truth(arg[0])
            if fn == "Fn::And":
                return all(self.truth(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.truth(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
        raise ValueError(f"cannot evaluate condition {node!r}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self.template["Conditions"][name])
        return self._conditions[name]

    def resolve(self, node):
        """node with every Fn::If replaced by its chosen branch (AWS::NoValue dropped)."""
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                cond, yes, no = node["Fn::If"]
                return self.resolve(yes if self.condition(cond) else no)
            out = {}
            for k, v in node.items():
                v = self.resolve(v)
                if v != {"Ref": "AWS::NoValue"}:
                    out[k] = v
            return out
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v != {"Ref": "AWS::NoValue"}]
        return node

    def resources(self) -> dict:
        """The resources this scenario creates, their Fn::If resolved."""
        out = {}
        for name, res in self.template["Resources"].items():
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            out[name] = self.resolve(res)
        return out


def references(node, found: set[str]) -> set[str]:
    """Names used by Ref, Fn::GetAtt and Fn::Sub anywhere in node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text, local = (v, {}) if isinstance(v, str) else (v[0], v[1])
                for m in re.finditer(r"\$\{([^!}][^}]*)\}", text):
                    name = m.group(1).split(".")[0]
                    if name not in local:
                        found.add(name)
                if local:
                    references(local, found)
            else:
                references(v, found)
    elif isinstance(node, list):
        for v in node:
            references(v, found)
    return found


def dependencies(resources: dict) -> dict[str, set[str]]:
    """What CloudFormation orders each resource after: DependsOn, and references in its
    Properties and Metadata (only to resources that exist)."""
    graph = {}
    for name, res in resources.items():
        deps = res.get("DependsOn", [])
        deps = {deps} if isinstance(deps, str) else set(deps)
        refs = references(res.get("Properties", {}), set()) | references(res.get("Metadata", {}), set())
        graph[name] = {d for d in deps | refs if d in resources and d != name}
    return graph


def ancestors(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def ref_names(node) -> list[str]:
    node = node if isinstance(node, list) else [node]
    return [n["Ref"] for n in node if isinstance(n, dict) and "Ref" in n]


def service_of(endpoint: dict) -> str:
    name = endpoint["Properties"]["ServiceName"]
    name = name.get("Fn::Sub", "") if isinstance(name, dict) else name
    return name.rsplit(".", 1)[-1]


# --- the checks ----------------------------------------------------------------------------
class Checks:
    def __init__(self, transformed: dict):
        self.t = transformed
        self.errors: list[str] = []
        self.notes: list[str] = []

    def fail(self, message: str):
        self.errors.append(message)

    # deletion order ---------------------------------------------------------------------------
    def network_path(self, resources: dict, function: str, need_s3: bool) -> dict[str, str]:
        """The resources a VPC function needs to reach S3 (custom-resource answers) and
        Secrets Manager: {logical id: why}."""
        fn = resources[function]["Properties"]
        vpc = fn.get("VpcConfig", {})
        subnets = set(ref_names(vpc.get("SubnetIds", [])))
        needed = {sg: "the function's security group" for sg in ref_names(vpc.get("SecurityGroupIds", []))}
        tables = set()
        for name, res in resources.items():
            props = res.get("Properties", {})
            if res["Type"] == "AWS::EC2::SubnetRouteTableAssociation" and set(ref_names(props.get("SubnetId"))) & subnets:
                needed[name] = "puts the function's subnet on the route table of the S3 gateway"
                tables.update(ref_names(props.get("RouteTableId")))
        s3 = []
        for name, res in resources.items():
            props = res.get("Properties", {})
            if res["Type"] != "AWS::EC2::VPCEndpoint":
                continue
            service = service_of(res)
            if service == "s3" and props.get("VpcEndpointType") == "Gateway" and set(ref_names(props.get("RouteTableIds", []))) & tables:
                needed[name] = "the S3 gateway the answer to CloudFormation goes through"
                s3.append(name)
            if service == "secretsmanager" and props.get("VpcEndpointType") == "Interface" and set(ref_names(props.get("SubnetIds", []))) & subnets:
                needed[name] = "the Secrets Manager endpoint the function reads its secrets through"
        if need_s3 and subnets and not s3:
            self.fail(f"{function}: no S3 gateway endpoint routes its subnets, so its answer to CloudFormation cannot leave the VPC")
        return needed

    def missing_dependencies(self, resources: dict, quiet: bool = False) -> list[str]:
        graph = dependencies(resources)
        problems = []
        for name, res in resources.items():
            if res["Type"] in ("AWS::CloudFormation::CustomResource",) or res["Type"].startswith("Custom::"):
                token = res["Properties"]["ServiceToken"]
                function = token["Fn::GetAtt"][0] if isinstance(token, dict) and "Fn::GetAtt" in token else None
                if function not in resources or resources[function]["Type"] != "AWS::Lambda::Function":
                    continue
                needed = self.network_path(resources, function, need_s3=True)
            elif res["Type"] == "AWS::SecretsManager::RotationSchedule":
                target = res["Properties"].get("RotationLambdaARN")
                function = target["Fn::GetAtt"][0] if isinstance(target, dict) and "Fn::GetAtt" in target else None
                if function not in resources:
                    continue
                needed = {k: v for k, v in self.network_path(resources, function, need_s3=False).items()
                          if resources[k]["Type"] == "AWS::EC2::VPCEndpoint"
                          and service_of(resources[k]) == "secretsmanager"}
            else:
                continue
            before = ancestors(graph, name)
            missing = [dep for dep in sorted(needed) if dep not in before]
            for dep in missing:
                problems.append(f"{name} does not depend on {dep} ({needed[dep]}): CloudFormation may "
                                f"delete {dep} first and then wait out {name}'s timeout")
            if not missing and not quiet:
                self.notes.append(f"{name} is created after and deleted before: {', '.join(sorted(needed))}")
        return problems

    def deletion_order(self):
        """Deleting the stack, or rolling back a failed first deploy, hung 16 minutes."""
        scenario = Scenario(self.t)  # defaults: the stack creates its network
        resources = scenario.resources()
        if "MigrationRun" not in resources:
            self.fail("no MigrationRun in the transformed template")
            return
        for problem in self.missing_dependencies(resources):
            self.fail(problem)
        # The check itself must catch a removed dependency: without MigrationRun's
        # Metadata it has to report the S3 gateway and the route-table associations.
        mutated = json.loads(json.dumps(resources))
        mutated["MigrationRun"].pop("Metadata", None)
        caught = [p for p in self.missing_dependencies(mutated, quiet=True) if p.startswith("MigrationRun ")]
        if not any("S3" in p for p in caught) or not any("RouteTableAssociation" in p for p in caught):
            self.fail("self-test: without MigrationRun's Metadata the deletion-order check still passed")
        else:
            self.notes.append(f"self-test: without MigrationRun's Metadata the check reports {len(caught)} missing dependencies")

    # network ------------------------------------------------------------------------------------
    def vpc_cidr(self):
        """VpcCidr admitted /23 and /24 although four /24 subnets are cut from it."""
        spec = self.t["Parameters"]["VpcCidr"]
        pattern = spec["AllowedPattern"]
        splits = []

        def find(node):
            if isinstance(node, dict):
                if "Fn::Cidr" in node and node["Fn::Cidr"][0] == {"Ref": "VpcCidr"}:
                    splits.append((int(node["Fn::Cidr"][1]), int(node["Fn::Cidr"][2])))
                for v in node.values():
                    find(v)
            elif isinstance(node, list):
                for v in node:
                    find(v)

        find(self.t["Resources"])
        if not splits:
            self.fail("VpcCidr: no Fn::Cidr split of it found")
            return
        longest = min(32 - bits - math.ceil(math.log2(count)) for count, bits in splits)
        for prefix in range(8, 33):
            ok = bool(re.fullmatch(pattern, f"10.42.0.0/{prefix}"))
            if ok != (16 <= prefix <= longest):
                self.fail(f"VpcCidr: pattern {'admits' if ok else 'refuses'} /{prefix}; subnets "
                          f"{splits} fit in /16 to /{longest}")
        for bad in ("256.0.0.0/16", "10.42.0/16", "10.42.0.0", "10.042.0.0/16 "):
            if re.fullmatch(pattern, bad):
                self.fail(f"VpcCidr: pattern admits {bad!r}")
        ipaddress.ip_network(spec["Default"])  # the default itself is a network
        if not re.fullmatch(pattern, spec["Default"]):
            self.fail("VpcCidr: the default does not match the pattern")

    # Interface endpoints and who calls them from the VPC.
    CALLERS = {
        "secretsmanager": "every function reads its secrets; RDS Proxy and rotate-keys too",
        "email": "the functions whose crate enables the ses feature send through the SES API",
    }

    def endpoints(self):
        """Logs, Monitoring and X-Ray endpoints had no caller; SES existed without MailFrom."""
        def interface(resources):
            return {service_of(r): n for n, r in resources.items()
                    if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"].get("VpcEndpointType") == "Interface"}

        without = interface(Scenario(self.t).resources())
        with_mail = interface(Scenario(self.t, {"MailFrom": "no-reply@example.com",
                                                "PublicBaseUrl": "https://app.example.com"}).resources())
        for service in sorted(set(without) | set(with_mail)):
            if service not in self.CALLERS:
                self.fail(f"interface endpoint {service} ({(without | with_mail)[service]}): nothing in the VPC calls it")
        if "email" in without:
            self.fail("the SES endpoint exists without MailFrom")
        if "email" not in with_mail:
            self.fail("no SES endpoint with MailFrom set (no function could send)")
        if "secretsmanager" not in without:
            self.fail("no Secrets Manager endpoint")
        self.notes.append(f"interface endpoints: {', '.join(sorted(without))}; with MailFrom also "
                          f"{', '.join(sorted(set(with_mail) - set(without)))}")

    # mail ---------------------------------------------------------------------------------------
    MAIL_SCENARIO = {"MailFrom": "no-reply@example.com", "PublicBaseUrl": "https://app.example.com"}
    SEND_ACTIONS = {"ses:SendEmail", "ses:SendRawEmail"}

    @staticmethod
    def enables_ses(cargo: dict) -> bool:
        """Whether a function crate's default build (what SAM builds) turns on
        user-service's `ses` feature: through its own default features or the dependency."""
        features = cargo.get("features", {})
        todo, seen = ["default"], {"default"}
        while todo:
            for item in features.get(todo.pop(), []):
                if item.replace("?/", "/") == "user-service/ses":
                    return True
                if item in features and item not in seen:
                    seen.add(item)
                    todo.append(item)
        dep = cargo.get("dependencies", {}).get("user-service")
        return isinstance(dep, dict) and "ses" in dep.get("features", [])

    @staticmethod
    def ses_grants(resources: dict, role: str) -> list[tuple[str, set[str], list]]:
        """Every Allow of an ses: action (or "*") to `role`: (where, actions, resources),
        from its inline policies, the template's managed policies it attaches, and the
        AWS::IAM::Policy / ManagedPolicy resources that name it in Roles. An AWS managed
        policy whose name mentions SES counts as a grant of everything."""
        docs, grants = [], []
        props = resources[role]["Properties"]
        for policy in props.get("Policies", []):
            docs.append((f"inline policy {policy.get('PolicyName')}", policy.get("PolicyDocument", {})))
        for arn in props.get("ManagedPolicyArns", []):
            names = ref_names(arn)
            if names and names[0] in resources:
                docs.append((f"managed policy {names[0]}", resources[names[0]]["Properties"].get("PolicyDocument", {})))
            elif "ses" in json.dumps(arn).lower():
                grants.append((f"managed policy {json.dumps(arn)}", {"ses:*"}, ["*"]))
        for name, res in resources.items():
            if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                    role in ref_names(res["Properties"].get("Roles", [])):
                docs.append((f"{res['Type']} {name}", res["Properties"].get("PolicyDocument", {})))
        for where, doc in docs:
            statements = doc.get("Statement", [])
            for statement in statements if isinstance(statements, list) else [statements]:
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement.get("Action", [])
                actions = {actions} if isinstance(actions, str) else set(actions)
                ses = {a for a in actions if isinstance(a, str) and (a == "*" or a.lower().startswith("ses:"))}
                if ses:
                    targets = statement.get("Resource", [])
                    grants.append((where, ses, targets if isinstance(targets, list) else [targets]))
        return grants

    # The functions that send email: a link (verification, email change, reset), a security
    # notice, or the lockout notice of a password or code check. Add a function here when it
    # starts sending; its Lambda test (tests/lambda) shows the mail arriving.
    SENDERS = frozenset({
        "admin-create-user", "admin-update-user", "change-email", "change-password",
        "forgot-password", "login", "login-mfa", "mfa-confirm", "mfa-disable", "mfa-setup",
        "register", "resend-verification", "reset-password", "verify-email",
    })

    def mail_senders(self):
        """Only forgot-password could send: every other function that emails would have
        run without MAIL_BACKEND=ses or without the right to send. Least privilege both ways:
        the SES grant and MAIL_BACKEND=ses go to exactly the functions that send (SENDERS).
        Every function crate builds the SES client (one feature set, so `sam build` compiles
        the core library once); a build without it could not start with MAIL_BACKEND=ses."""
        senders = set(self.SENDERS)
        for cargo in sorted((ROOT / "functions").glob("*/Cargo.toml")):
            if not self.enables_ses(tomllib.loads(cargo.read_text())):
                self.fail(f"{cargo.relative_to(ROOT)}: does not enable user-service's ses feature "
                          "(every function builds with one feature set; see its comment)")
        for label, overrides in (("without MailFrom", {}), ("with MailFrom", self.MAIL_SCENARIO)):
            with_mail = bool(overrides)
            resources = Scenario(self.t, overrides).resources()
            functions = {}
            for name, res in resources.items():
                if res["Type"] != "AWS::Lambda::Function":
                    continue
                key = res["Properties"].get("Code", {}).get("S3Key", "")
                m = re.fullmatch(r"functions/([\w-]+)\.zip", str(key))
                if m:
                    functions[m.group(1)] = name
                else:
                    self.fail(f"{name}: its code is not a functions/<crate> folder ({key!r})")
            for crate in sorted(senders - set(functions)):
                self.fail(f"functions/{crate} is listed as a sender but no function of the template builds it")
            for crate, name in sorted(functions.items()):
                props = resources[name]["Properties"]
                env = props.get("Environment", {}).get("Variables", {})
                role_ref = props.get("Role", {})
                role = role_ref.get("Fn::GetAtt", [None])[0] if isinstance(role_ref, dict) else None
                grants = self.ses_grants(resources, role) if role in resources else []
                where = f"{name} (functions/{crate}, {label})"
                if crate not in senders:
                    for source, actions, _ in grants:
                        self.fail(f"{where}: {', '.join(sorted(actions))} granted by {source}, but it sends no "
                                  "email (least privilege: only SENDERS may send)")
                    if env.get("MAIL_BACKEND") == "ses":
                        self.fail(f"{where}: MAIL_BACKEND=ses, but it sends no email (not in SENDERS)")
                    continue
                if env.get("MAIL_BACKEND") != "ses":
                    self.fail(f"{where}: MAIL_BACKEND is {env.get('MAIL_BACKEND')!r}, not 'ses' (the log back "
                              "end would write its links to the log)")
                if not with_mail:
                    for source, actions, _ in grants:
                        self.fail(f"{where}: {', '.join(sorted(actions))} granted by {source} with no MailFrom to send as")
                    continue
                if "SMTP_FROM" not in env:
                    self.fail(f"{where}: no SMTP_FROM (it would send as no-reply@localhost.localdomain)")
                if "PUBLIC_BASE_URL" not in env:
                    self.fail(f"{where}: no PUBLIC_BASE_URL (its links would point at the local default)")
                granted = set().union(*(actions for _, actions, _ in grants)) if grants else set()
                if not self.SEND_ACTIONS <= granted:
                    self.fail(f"{where}: lacks {', '.join(sorted(self.SEND_ACTIONS - granted))} (its sends would be refused)")
                for source, actions, targets in grants:
                    if actions - self.SEND_ACTIONS:
                        self.fail(f"{where}: {source} grants {', '.join(sorted(actions - self.SEND_ACTIONS))}; "
                                  "sending needs only SendEmail and SendRawEmail")
                    for target in targets:
                        if ":identity/" not in json.dumps(target):
                            self.fail(f"{where}: {source} grants sending on {json.dumps(target)}, not on the "
                                      "MailFrom identity only")
            if with_mail:
                self.ses_endpoint_reachable(resources, [functions[c] for c in sorted(senders) if c in functions])
        self.notes.append(f"{len(senders)} functions send mail ({', '.join(sorted(senders))}): MAIL_BACKEND=ses, "
                          "SMTP_FROM, PUBLIC_BASE_URL and SendEmail/SendRawEmail on the MailFrom identity only; "
                          "no other function has an SES grant")

    def ses_endpoint_reachable(self, resources: dict, functions: list[str]):
        """Each sender's security group is admitted on 443 by the SES endpoint's (with the
        network created here and MailFrom set)."""
        endpoints = [n for n, r in resources.items() if r["Type"] == "AWS::EC2::VPCEndpoint" and service_of(r) == "email"]
        if not endpoints:
            return  # endpoints() reports a missing SES endpoint
        admitted = set()
        for endpoint in endpoints:
            for group in ref_names(resources[endpoint]["Properties"].get("SecurityGroupIds", [])):
                rules = [dict(r, GroupId={"Ref": group}) for r in
                         resources.get(group, {}).get("Properties", {}).get("SecurityGroupIngress", [])]
                rules += [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
                          and ref_names(r["Properties"].get("GroupId")) == [group]]
                for rule in rules:
                    if int(rule.get("FromPort", -1)) <= 443 <= int(rule.get("ToPort", -1)):
                        admitted.update(ref_names(rule.get("SourceSecurityGroupId")))
        for name in functions:
            groups = ref_names(resources[name]["Properties"].get("VpcConfig", {}).get("SecurityGroupIds", []))
            if not set(groups) & admitted:
                self.fail(f"{name}: none of its security groups {groups} may reach the SES endpoint on 443")

    # secrets ------------------------------------------------------------------------------------
    MFA_KEYS_SECRET = "MfaKeysSecret"
    # The functions whose code reads the TOTP encryption keys: mfa-setup encrypts a new TOTP
    # secret, the others decrypt stored ones to check a code.
    MFA_KEY_READERS = {"mfa-setup", "mfa-confirm", "mfa-disable", "login-mfa"}
    SECRET_READ_ACTIONS = {"secretsmanager:getsecretvalue", "secretsmanager:*", "*"}

    def functions_by_crate(self, resources: dict) -> dict[str, str]:
        """{crate under functions/: logical id of its AWS::Lambda::Function}."""
        functions = {}
        for name, res in resources.items():
            if res["Type"] == "AWS::Lambda::Function":
                key = res["Properties"].get("Code", {}).get("S3Key", "")
                m = re.fullmatch(r"functions/([\w-]+)\.zip", str(key))
                if m:
                    functions[m.group(1)] = name
        return functions

    def function_parts(self, resources: dict, label: str):
        """Each function built from functions/<crate>, by crate: (crate, its logical id, where
        it is for messages, its environment variables, its role's logical id)."""
        for crate, name in sorted(self.functions_by_crate(resources).items()):
            props = resources[name]["Properties"]
            role_ref = props.get("Role", {})
            role = role_ref.get("Fn::GetAtt", [None])[0] if isinstance(role_ref, dict) else None
            yield (crate, name, f"{name} (functions/{crate}, {label})",
                   props.get("Environment", {}).get("Variables", {}), role)

    @staticmethod
    def policy_documents(resources: dict, role: str) -> list[tuple[str, dict]]:
        """The policy documents that apply to `role`: its inline policies, the template's
        managed policies it attaches, and the AWS::IAM::Policy / ManagedPolicy resources
        that name it in Roles."""
        docs = []
        props = resources[role]["Properties"]
        for policy in props.get("Policies", []):
            docs.append((f"inline policy {policy.get('PolicyName')}", policy.get("PolicyDocument", {})))
        for arn in props.get("ManagedPolicyArns", []):
            names = ref_names(arn)
            if names and names[0] in resources:
                docs.append((f"managed policy {names[0]}", resources[names[0]]["Properties"].get("PolicyDocument", {})))
        for name, res in resources.items():
            if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                    role in ref_names(res["Properties"].get("Roles", [])):
                docs.append((f"{res['Type']} {name}", res["Properties"].get("PolicyDocument", {})))
        return docs

    def secret_grants(self, resources: dict, role: str, secret: str) -> list[str]:
        """Where `role` may read `secret`: an Allow of GetSecretValue (or secretsmanager:*,
        or *) on a resource that references the secret or on "*". An AWS managed policy
        whose ARN mentions Secrets Manager counts as a grant."""
        found = []
        for arn in resources[role]["Properties"].get("ManagedPolicyArns", []):
            if not (ref_names(arn) and ref_names(arn)[0] in resources) and "secretsmanager" in json.dumps(arn).lower():
                found.append(f"managed policy {json.dumps(arn)}")
        for where, doc in self.policy_documents(resources, role):
            statements = doc.get("Statement", [])
            for statement in statements if isinstance(statements, list) else [statements]:
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement.get("Action", [])
                actions = {actions} if isinstance(actions, str) else set(actions)
                if not {a.lower() for a in actions if isinstance(a, str)} & self.SECRET_READ_ACTIONS:
                    continue
                targets = statement.get("Resource", [])
                targets = targets if isinstance(targets, list) else [targets]
                for target in targets:
                    if target == "*" or secret in references(target, set()):
                        found.append(f"{where} ({'on *' if target == '*' else 'on ' + secret})")
        return found

    def restricted_secret(self, secret: str, env_var: str, readers: set[str], what: str,
                          rotator: str | None = None):
        """Only the functions in `readers` may read `secret`: each has `env_var` = !Ref secret
        and a GetSecretValue grant on it; no other function names it in its environment and
        no other role may read it (nor through a secretsmanager grant on "*"). `rotator`, the
        secret's rotation function, may read it without the variable (the event names it)."""
        for label, overrides in (("defaults", {}),
                                 ("with MailFrom and RDS Proxy", dict(self.MAIL_SCENARIO, UseRdsProxy="true"))):
            resources = Scenario(self.t, overrides).resources()
            if secret not in resources or resources[secret]["Type"] != "AWS::SecretsManager::Secret":
                self.fail(f"no AWS::SecretsManager::Secret {secret} ({what})")
                return
            functions = self.functions_by_crate(resources)
            for crate in sorted((readers | {rotator} - {None}) - set(functions)):
                self.fail(f"functions/{crate} reads {secret} but no function of the template builds it")
            readers_roles = {}
            for crate, name, where, env, role in self.function_parts(resources, label):
                if crate in readers or crate == rotator:
                    readers_roles[role] = name
                    if crate in readers and env.get(env_var) != {"Ref": secret}:
                        self.fail(f"{where}: {env_var} is {env.get(env_var)!r}, not !Ref {secret}")
                    if role not in resources or not self.secret_grants(resources, role, secret):
                        self.fail(f"{where}: no GetSecretValue on {secret} (it could not read {what})")
                else:
                    named = sorted(k for k, v in env.items() if secret in references(v, set()))
                    if named:
                        self.fail(f"{where}: {', '.join(named)} names {secret}, which it never reads")
            for role, res in sorted(resources.items()):
                if res["Type"] != "AWS::IAM::Role" or role in readers_roles:
                    continue
                for grant in self.secret_grants(resources, role, secret):
                    allowed = sorted(readers | {rotator} - {None})
                    self.fail(f"{role} ({label}): may read {secret} through {grant}; only "
                              f"{', '.join(allowed)} may")
        allowed = sorted(readers | {rotator} - {None})
        self.notes.append(f"{secret}: readable by exactly {', '.join(allowed)}; no other role may read it")

    # The functions that sign access tokens; every other function verifies with the public
    # keys (JwtPublicKeysSecret) and cannot mint a token, even with code execution.
    JWT_SIGNERS = {"login", "login-mfa", "refresh"}

    def jwt_keys(self):
        """The private signing keys mint any token, admin included: only the functions that
        issue tokens, and the rotation, may read them."""
        self.restricted_secret("JwtKeysSecret", "JWT_KEYS_SECRET_ARN", self.JWT_SIGNERS,
                               "the private JWT signing keys", rotator="rotate-keys")

    def mfa_keys(self):
        """The TOTP secrets' encryption keys are the one secret that unlocks every account's
        second factor: only the four functions that use them may read them or see their ARN
        (least privilege; MFA_KEYS_SECRET_ARN is not in Globals)."""
        secret = self.MFA_KEYS_SECRET
        self.restricted_secret(secret, "MFA_KEYS_SECRET_ARN", self.MFA_KEY_READERS,
                               "the TOTP encryption keys")
        # The first value: generated (never key material in the template, and so in every
        # change set), with "current" naming the generated key.
        props = self.t["Resources"][secret]["Properties"]
        generate = props.get("GenerateSecretString")
        if "SecretString" in props or not generate:
            self.fail(f"{secret}: its value must be generated (GenerateSecretString), not written in the template")
        else:
            try:
                current = json.loads(generate.get("SecretStringTemplate", "{}")).get("current")
            except ValueError:
                current = None
            if current != generate.get("GenerateStringKey"):
                self.fail(f"{secret}: \"current\" in SecretStringTemplate ({current!r}) is not the generated "
                          f"key {generate.get('GenerateStringKey')!r}")

    def admin_requires_mfa(self):
        """An admin function without ADMIN_REQUIRES_MFA would accept the tokens the authorizer
        refuses (the functions verify the bearer token themselves when a request has no
        authorizer context)."""
        source = (ROOT / "shared/src/http/routes/mod.rs").read_text()
        admin = set(re.findall(r'Endpoint\s*\{\s*function:\s*"([^"]+)"[^}]*access:\s*Access::Admin\b', source))
        if not admin:
            self.fail("shared/src/http/routes/mod.rs: no Access::Admin endpoint found (update scripts/template_checks.py)")
            return
        expected = admin | {"authorizer"}
        resources = Scenario(self.t).resources()
        functions = self.functions_by_crate(resources)
        for crate in sorted(expected - set(functions)):
            self.fail(f"functions/{crate}: no function of the template builds it")
        for crate, name in sorted(functions.items()):
            env = resources[name]["Properties"].get("Environment", {}).get("Variables", {})
            value = env.get("ADMIN_REQUIRES_MFA")
            if crate in expected and value != {"Ref": "AdminRequiresMfa"}:
                self.fail(f"{name} (functions/{crate}): ADMIN_REQUIRES_MFA is {value!r}, not !Ref AdminRequiresMfa")
            elif crate not in expected and value is not None:
                self.fail(f"{name} (functions/{crate}): ADMIN_REQUIRES_MFA set on a function without an admin route")
        self.notes.append(f"ADMIN_REQUIRES_MFA on the authorizer and the {len(admin)} admin functions only")

    def bootstrap_secrets(self):
        """A new secret failed the deploy: the CloudFormation execution role
        (deploy/bootstrap.yaml) may create only the secrets it names, by logical id."""
        text = (ROOT / "deploy/bootstrap.yaml").read_text()
        secrets = sorted(n for n, r in self.t["Resources"].items() if r["Type"] == "AWS::SecretsManager::Secret")
        for name in secrets:
            if f":secret:{name}-*" not in text:
                self.fail(f"{name}: deploy/bootstrap.yaml's execution role has no secretsmanager grant on "
                          f"secret:{name}-* (CloudFormation could not create it)")
        self.notes.append(f"deploy/bootstrap.yaml's execution role may create the template's secrets ({', '.join(secrets)})")

    # data ---------------------------------------------------------------------------------------
    # The database's two logins: the master user (RDS-managed secret) migrates; every other
    # function runs as the runtime role, whose own secret Secrets Manager rotates.
    MASTER_SECRET = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
    RUNTIME_SECRET = "DatabaseRuntimeSecret"
    MIGRATOR = "migrate"

    def master_grants(self, resources: dict, role: str) -> list[str]:
        """Where `role` may read the master secret: a read grant on a resource naming the
        Database resource (its MasterUserSecret), or on "*"."""
        return self.secret_grants(resources, role, "Database")

    def database_logins(self, template: dict | None = None, quiet: bool = False) -> list[str]:
        """Every function was the database's master user, health and jwks included; that
        user can also erase the Postgres audit trail. Now only the migrate function has
        DATABASE_SECRET_ARN (the master secret) and may read it; every other function (and
        RDS Proxy) reads the runtime role's secret only; that secret is generated for the
        role the migrations create and rotated (hosted PostgreSQLSingleUser) after
        MigrationRun. A self-test grants the master secret to another function and expects
        a finding."""
        template = template or self.t
        found = []
        role_name = re.search(r'pub const RUNTIME_ROLE: &str = "([^"]+)"',
                              (ROOT / "shared/src/config.rs").read_text())
        for label, overrides in (("defaults", {}), ("with RDS Proxy", {"UseRdsProxy": "true"})):
            resources = Scenario(template, overrides).resources()
            functions = self.functions_by_crate(resources)
            if self.MIGRATOR not in functions:
                found.append(f"no function builds functions/{self.MIGRATOR}")
            migrator_role = None
            for crate, name, where, env, role in self.function_parts(resources, label):
                if crate == self.MIGRATOR:
                    migrator_role = role
                    if env.get("DATABASE_SECRET_ARN") != self.MASTER_SECRET:
                        found.append(f"{where}: DATABASE_SECRET_ARN is {env.get('DATABASE_SECRET_ARN')!r}, "
                                     "not the master secret (it migrates as the master user)")
                    if role not in resources or not self.master_grants(resources, role):
                        found.append(f"{where}: no GetSecretValue on the master secret")
                else:
                    named = sorted(k for k, v in env.items() if "MasterUserSecret" in json.dumps(v))
                    if named:
                        found.append(f"{where}: {', '.join(named)} names the master secret; only "
                                     f"functions/{self.MIGRATOR} may")
                # Functions that never query the database (openapi, rotate-keys) see the
                # variable from Globals but have no grant; that is their business.
                if "DATABASE_RUNTIME_SECRET_ARN" in env and \
                        env["DATABASE_RUNTIME_SECRET_ARN"] != {"Ref": self.RUNTIME_SECRET}:
                    found.append(f"{where}: DATABASE_RUNTIME_SECRET_ARN is not !Ref {self.RUNTIME_SECRET}")
                if crate == self.MIGRATOR and (role not in resources or not self.secret_grants(
                        resources, role, self.RUNTIME_SECRET)):
                    found.append(f"{where}: no GetSecretValue on {self.RUNTIME_SECRET} (it could not set "
                                 "the runtime role's password)")
            for role, res in sorted(resources.items()):
                if res["Type"] != "AWS::IAM::Role" or role == migrator_role:
                    continue
                for grant in self.master_grants(resources, role):
                    found.append(f"{role} ({label}): may read the master database secret through {grant}; "
                                 f"only functions/{self.MIGRATOR} may")
        secret = template["Resources"].get(self.RUNTIME_SECRET)
        if not secret or secret["Type"] != "AWS::SecretsManager::Secret":
            found.append(f"no AWS::SecretsManager::Secret {self.RUNTIME_SECRET} (the runtime role's login)")
        else:
            generate = secret["Properties"].get("GenerateSecretString") or {}
            text = generate.get("SecretStringTemplate", "")
            text = text.get("Fn::Sub", "") if isinstance(text, dict) else text
            try:
                username = json.loads(re.sub(r"\$\{[^}]+\}", "0", text)).get("username")
            except ValueError:
                username = None
            if generate.get("GenerateStringKey") != "password" or not role_name or username != role_name.group(1):
                found.append(f"{self.RUNTIME_SECRET}: must generate \"password\" for username "
                             f"{role_name.group(1) if role_name else '?'} (RUNTIME_ROLE in shared/src/config.rs)")
            resources = Scenario(template).resources()
            schedules = [n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::RotationSchedule"
                         and r["Properties"].get("SecretId") == {"Ref": self.RUNTIME_SECRET}]
            if not schedules:
                found.append(f"{self.RUNTIME_SECRET}: no rotation schedule")
            for name in schedules:
                hosted = resources[name]["Properties"].get("HostedRotationLambda", {})
                if hosted.get("RotationType") != "PostgreSQLSingleUser":
                    found.append(f"{name}: not the hosted PostgreSQLSingleUser rotation")
                if "MigrationRun" not in ancestors(dependencies(resources), name):
                    found.append(f"{name}: must wait for MigrationRun (the role and its password)")
        if not quiet:
            for error in found:
                self.fail(error)
            self.notes.append(f"database logins: only functions/{self.MIGRATOR} reads the master secret; "
                              f"the others (and RDS Proxy) read {self.RUNTIME_SECRET}, rotated after MigrationRun")
        return found

    def database_logins_self_test(self):
        """The check above must catch a master-secret grant on another function."""
        import copy
        broken = copy.deepcopy(self.t)
        victim = next((n for n, r in broken["Resources"].items() if r["Type"] == "AWS::IAM::Role"
                       and "Migrate" not in n and r["Properties"].get("Policies")), None)
        if not victim:
            self.fail("database logins self-test: no role to break")
            return
        broken["Resources"][victim]["Properties"]["Policies"].append({
            "PolicyName": "self-test",
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                              "Resource": self.MASTER_SECRET}]}})
        if not any(victim in error for error in self.database_logins(broken, quiet=True)):
            self.fail(f"database logins self-test: a master-secret grant on {victim} went unnoticed")
        else:
            self.notes.append(f"self-test: a master-secret grant added to {victim} is reported")

    def database(self):
        """The RDS log group had no retention; a PostgresVersion change failed."""
        scenario = Scenario(self.t)
        resources = scenario.resources()
        groups = {}
        for name, res in resources.items():
            if res["Type"] == "AWS::Logs::LogGroup":
                group = res["Properties"].get("LogGroupName")
                groups[json.dumps(group, sort_keys=True)] = (name, res)
        for name, res in resources.items():
            if res["Type"] != "AWS::RDS::DBInstance":
                continue
            props = res["Properties"]
            ident = props.get("DBInstanceIdentifier")
            for log in props.get("EnableCloudwatchLogsExports", []):
                if not isinstance(ident, dict) or "Fn::Sub" not in ident:
                    self.fail(f"{name}: exports its {log} log but has no DBInstanceIdentifier, so the log "
                              "group's name is unknown in advance and RDS creates it without retention")
                    continue
                wanted = {"Fn::Sub": f"/aws/rds/instance/{ident['Fn::Sub']}/{log}"}
                match = groups.get(json.dumps(wanted, sort_keys=True))
                if not match:
                    self.fail(f"{name}: no AWS::Logs::LogGroup named {wanted['Fn::Sub']}")
                    continue
                group, gres = match
                if "RetentionInDays" not in gres["Properties"]:
                    self.fail(f"{group}: no RetentionInDays")
                if group not in ancestors(dependencies(resources), name):
                    self.fail(f"{name} does not depend on {group}: RDS may create the group first")
            version = props.get("EngineVersion")
            if isinstance(version, dict) and "Ref" in version:
                allowed = self.t["Parameters"].get(version["Ref"], {}).get("AllowedValues", [])
                majors = {str(v).split(".")[0] for v in allowed}
                if len(majors) > 1 and props.get("AllowMajorVersionUpgrade") is not True:
                    self.fail(f"{name}: {version['Ref']} allows major versions {sorted(majors)} but "
                              "AllowMajorVersionUpgrade is not true")

    # API ----------------------------------------------------------------------------------------
    def cors(self):
        """CORS neither allowed nor exposed X-Request-Id."""
        source = (ROOT / "shared/src/http/mod.rs").read_text()
        m = re.search(r'static REQUEST_ID: HeaderName = HeaderName::from_static\("([^"]+)"\)', source)
        if not m:
            self.fail("shared/src/http/mod.rs: REQUEST_ID header name not found (update scripts/template_checks.py)")
            return
        header = m.group(1).lower()
        scenario = Scenario(self.t, {"CorsOrigins": "https://app.example.com"})
        found = False
        for name, res in scenario.resources().items():
            if res["Type"] != "AWS::ApiGatewayV2::Api":
                continue
            cors = res["Properties"].get("CorsConfiguration") or \
                res["Properties"].get("Body", {}).get("x-amazon-apigateway-cors")
            if not cors:
                self.fail(f"{name}: no CORS configuration with CorsOrigins set")
                continue
            found = True
            for key in ("allowHeaders", "exposeHeaders"):
                values = [v.lower() for v in cors.get(key, cors.get(key[0].upper() + key[1:], []))]
                if header not in values:
                    self.fail(f"{name}: CORS {key} lacks {header} (the service reads it and echoes it)")
        if not found:
            self.fail("no HTTP API with CORS found")

    # timeouts -------------------------------------------------------------------------------------
    def timeouts(self):
        """Job timeouts equalled SAM's own wait, so a slow stack was cut off mid-operation."""
        resources = Scenario(self.t).resources()
        cfn_wait = 0
        for name, res in resources.items():
            if res["Type"] == "AWS::CloudFormation::CustomResource":
                props = res["Properties"]
                timeout = int(props.get("ServiceTimeout", 3600))
                fn = props["ServiceToken"]["Fn::GetAtt"][0]
                fn_timeout = int(resources[fn]["Properties"].get("Timeout", 3))
                if timeout <= fn_timeout:
                    self.fail(f"{name}: ServiceTimeout {timeout} s is not above {fn}'s Timeout {fn_timeout} s")
                cfn_wait = max(cfn_wait, timeout)
        samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
        waits = {}
        for env, sections in samconfig.items():
            if isinstance(sections, dict) and "deploy" in sections:
                wait = sections["deploy"]["parameters"].get("max_wait_duration")
                if not isinstance(wait, int):
                    self.fail(f"samconfig.toml [{env}.deploy.parameters]: no max_wait_duration (SAM's default is 60 min)")
                    continue
                if wait * 60 < 3 * cfn_wait:
                    self.fail(f"samconfig.toml [{env}]: max_wait_duration {wait} min leaves no room for a "
                              f"{cfn_wait} s custom resource within a stack operation")
                waits[env] = wait
        self.sam_waits = waits

    # workflows ------------------------------------------------------------------------------------
    def workflows(self):
        """Actions on movable tags; deploys without tests, from any branch, two at once."""
        wf_dir = ROOT / ".github/workflows"
        jobs_with_env = []
        for path in sorted(wf_dir.glob("*.yml")):
            text = path.read_text()
            for m in re.finditer(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, re.M):
                ref, rest = m.group(1), m.group(2)
                if ref.startswith("./"):
                    continue
                if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref):
                    self.fail(f"{path.name}: {ref} is not pinned to a full commit SHA")
                elif not re.match(r"\s+#\s*\S+", rest):
                    self.fail(f"{path.name}: {ref} has no '# version' comment (Dependabot and readers need it)")
            wf = yaml.safe_load(text)
            for job_id, job in wf.get("jobs", {}).items():
                if "environment" in job:
                    jobs_with_env.append((path.name, job_id, job, text))
        deploy_jobs = 0
        groups = {}
        for file, job_id, job, text in jobs_with_env:
            deploy_jobs += 1
            where = f"{file} job {job_id}"
            env = job["environment"]["name"] if isinstance(job["environment"], dict) else job["environment"]
            cond = str(job.get("if", ""))
            if "github.ref == 'refs/heads/main'" not in cond:
                self.fail(f"{where}: runs in environment {env} without `if: github.ref == 'refs/heads/main'`")
            conc = job.get("concurrency")
            if not isinstance(conc, dict) or conc.get("cancel-in-progress") is not False:
                self.fail(f"{where}: needs a job concurrency group with cancel-in-progress: false")
            else:
                group = str(conc.get("group"))
                if "${{" in group:
                    self.fail(f"{where}: concurrency group {group!r} must be fixed per environment, not per ref or run")
                groups.setdefault(group, set()).add(env)
            minutes = job.get("timeout-minutes")
            if not isinstance(minutes, int):
                self.fail(f"{where}: no timeout-minutes")
            steps = "\n".join(str(s.get("run", "")) for s in job.get("steps", []))
            stage = re.search(r"scripts/deploy\.sh\s+(\w+)\s+(\w+)", steps)
            if stage and isinstance(minutes, int):
                config_env, action = stage.groups()
                wait = getattr(self, "sam_waits", {}).get(config_env)
                if action in ("deploy", "execute") and wait and minutes <= wait + 10:
                    self.fail(f"{where}: timeout-minutes {minutes} is not above SAM's/the script's wait "
                              f"({wait} min) plus setup")
        if not deploy_jobs:
            self.fail("no workflow job runs in a GitHub environment (the deploy jobs must)")
        # The reusable deploy workflow runs only after the test job, on pushes to main.
        ci = yaml.safe_load((wf_dir / "ci.yml").read_text())
        callers = [(k, j) for k, j in ci["jobs"].items() if str(j.get("uses", "")).endswith("deploy.yml")]
        if not callers:
            self.fail("ci.yml: no job calls ./.github/workflows/deploy.yml")
        for job_id, job in callers:
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if "test" not in needs:
                self.fail(f"ci.yml job {job_id}: deploys without `needs: test`")
            cond = str(job.get("if", ""))
            if "github.event_name == 'push'" not in cond or "github.ref == 'refs/heads/main'" not in cond:
                self.fail(f"ci.yml job {job_id}: deploys on something else than a push to main")
        deploy = yaml.safe_load((wf_dir / "deploy.yml").read_text())
        triggers = deploy.get(True, deploy.get("on"))  # PyYAML reads `on:` as True
        if set(triggers) != {"workflow_call"}:
            self.fail(f"deploy.yml: triggered by {sorted(map(str, triggers))}; only workflow_call (from ci.yml after the tests)")
        script = (ROOT / "scripts/deploy.sh").read_text()
        if "--no-execute-changeset" not in script or "execute-change-set" not in script:
            self.fail("scripts/deploy.sh: prod must create the change set with --no-execute-changeset and execute it by ARN")
        self.notes.append(f"{deploy_jobs} deploy jobs: main only, after the tests; concurrency groups "
                          + ", ".join(f"{g} ({'/'.join(sorted(e))})" for g, e in sorted(groups.items())))

    def run(self):
        self.deletion_order()
        self.vpc_cidr()
        self.endpoints()
        self.mail_senders()
        self.jwt_keys()
        self.mfa_keys()
        self.admin_requires_mfa()
        self.bootstrap_secrets()
        self.database()
        self.database_logins()
        self.database_logins_self_test()
        self.cors()
        self.timeouts()
        self.workflows()
        return self.errors


# --- the example of another API behind the authorizer -----------------------------------
EXAMPLE = ROOT / "examples" / "protected-api"


def example_checks(transformed: dict) -> list[str]:
    """examples/protected-api: routes, authorizer and who may invoke the function (see the
    module docstring). `transformed` is its SAM-transformed template."""
    errors = []
    resources = transformed["Resources"]
    default_rules = re.search(
        r'SERVICE_DEFAULT_RULES: &str = r#"(.*?)"#', (ROOT / "shared/src/auth/rules.rs").read_text(), re.S
    )
    if not default_rules:
        return ["shared/src/auth/rules.rs: SERVICE_DEFAULT_RULES not found"]
    own = set(json.loads(default_rules.group(1)))
    rules = json.loads((EXAMPLE / "route-rules.json").read_text())
    from_rules = set(rules) - own
    main_rs = (EXAMPLE / "function/src/main.rs").read_text()
    table = re.search(r"const ROUTES: .*?= &\[(.*?)\n\];", main_rs, re.S)
    from_function = set(re.findall(r'"([A-Z]+ /[^"]*)"', table.group(1))) if table else set()
    if not from_function:
        errors.append("function/src/main.rs: no route keys found in ROUTES")

    apis = {k for k, v in resources.items() if v["Type"] == "AWS::ApiGatewayV2::Api"}
    if len(apis) != 1:
        return errors + [f"expected one HTTP API, found {sorted(apis)}"]
    (api,) = apis
    body = resources[api]["Properties"].get("Body", {})
    authorizers = body.get("components", {}).get("securitySchemes", {})
    from_template = set()
    for path, methods in body.get("paths", {}).items():
        for method, operation in methods.items():
            key = f"{method.upper()} {path}"
            from_template.add(key)
            security = [name for entry in operation.get("security", []) for name in entry]
            if not security or any(name not in authorizers for name in security):
                errors.append(f"{key}: not behind the imported authorizer (security {security})")
    for name, scheme in authorizers.items():
        uri = json.dumps(scheme.get("x-amazon-apigateway-authorizer", {}).get("authorizerUri"))
        if "Fn::ImportValue" not in uri or "-AuthorizerArn" not in uri:
            errors.append(f"authorizer {name} is not the imported STACK-AuthorizerArn: {uri}")

    for what, routes in (("route-rules.json (beyond this service's own)", from_rules),
                         ("function/src/main.rs ROUTES", from_function)):
        if routes != from_template:
            errors.append(f"{what} {sorted(routes)} != template routes {sorted(from_template)}")

    functions = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"]
    for kind in ("AWS::Lambda::Url", "AWS::Lambda::EventSourceMapping"):
        if any(v["Type"] == kind for v in resources.values()):
            errors.append(f"{kind}: the function must be reachable through its API alone")
    for name, res in resources.items():
        if res["Type"] != "AWS::Lambda::Permission":
            continue
        props = res["Properties"]
        target = json.dumps(props.get("FunctionName"))
        if not any(f'"{f}"' in target for f in functions):
            continue  # the authorizer's permission, on the imported function
        source = json.dumps(props.get("SourceArn"))
        if props.get("Principal") != "apigateway.amazonaws.com" or f'"{api}"' not in source:
            errors.append(f"{name}: invoke permission for {props.get('Principal')} from {source}, "
                          f"not for API Gateway from {api}")
    if not errors:
        print(f"examples/protected-api: {len(from_template)} routes, each behind the imported "
              "authorizer, the same in route-rules.json and the function; invocable by its API alone")
    return errors


# --- checkov --------------------------------------------------------------------------------
def checkov_summary(reports: list[str]) -> int:
    """Prints each report's counts and every failure; checks that every suppression has a
    reason and still suppresses something. Returns the number of problems."""
    problems = 0
    for report in reports:
        data = json.loads(pathlib.Path(report).read_text())
        data = data if isinstance(data, list) else [data]
        for part in data:
            results = part.get("results", {})
            summary = part.get("summary", {})
            label = pathlib.Path(report).name.removeprefix("checkov-").removesuffix(".json")
            if label == "template.yaml":
                label = "template.yaml (SAM-transformed)"
            elif label == "protected-api.yaml":
                label = "examples/protected-api/template.yaml (SAM-transformed)"
            failed = results.get("failed_checks", [])
            skipped = results.get("skipped_checks", [])
            for check in failed:
                problems += 1
                resource = check["resource"].split(".", 1)[-1]
                print(f"  FAILED {check['check_id']} {resource}: {check['check_name']}")
            reasons = {}
            for check in skipped:
                comment = (check.get("check_result", {}).get("suppress_comment") or "").strip()
                if len(comment) < 20 or comment.lower().startswith("no comment"):
                    problems += 1
                    print(f"  suppression without a real reason: {check['check_id']} {check['resource']}")
                reasons[comment] = reasons.get(comment, 0) + 1
            print(f"{label}: {summary.get('passed', 0)} passed, {summary.get('failed', 0)} failed, "
                  f"{summary.get('skipped', 0)} suppressed with {len(reasons)} distinct reasons "
                  f"(checkov {summary.get('checkov_version', '?')}, {summary.get('resource_count', '?')} resources)")
    return problems


def stale_suppressions(template_paths: list[str], reports: list[str]) -> int:
    """A checkov skip in a template that no longer suppresses anything is stale."""
    used = set()
    for report in reports:
        data = json.loads(pathlib.Path(report).read_text())
        for part in data if isinstance(data, list) else [data]:
            for check in part.get("results", {}).get("skipped_checks", []):
                used.add((check["check_id"], check["resource"].split(".", 1)[-1]))
    problems = 0

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    for path in template_paths:
        template = yaml.load(pathlib.Path(path).read_text(), Loader=Loader)
        for name, res in template.get("Resources", {}).items():
            for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
                # A SAM resource's skip is used by the resources generated from it.
                if not any(cid == skip["id"] and (r == name or r.startswith(name)) for cid, r in used):
                    problems += 1
                    print(f"  stale suppression: {path} {name} skips {skip['id']}, which no longer fails there")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[1] == "transform":
        source = pathlib.Path(argv[3]) if len(argv) == 4 else ROOT / "template.yaml"
        out = transform(source)
        pathlib.Path(argv[2]).write_text(json.dumps(out, indent=1))
        print(f"SAM-transformed {source.relative_to(ROOT) if source.is_absolute() else source}: "
              f"{len(out['Resources'])} resources")
        return 0
    if len(argv) == 3 and argv[1] == "example":
        errors = example_checks(json.loads(pathlib.Path(argv[2]).read_text()))
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if errors else 0
    if len(argv) == 3 and argv[1] == "check":
        checks = Checks(json.loads(pathlib.Path(argv[2]).read_text()))
        errors = checks.run()
        for note in checks.notes:
            print(note)
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if errors else 0
    if len(argv) >= 3 and argv[1] == "checkov":
        templates = [a.split("=", 1)[1] for a in argv[2:] if a.startswith("--template=")]
        reports = [a for a in argv[2:] if not a.startswith("--template=")]
        problems = checkov_summary(reports) + stale_suppressions(templates, reports)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
