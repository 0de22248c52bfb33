#!/usr/bin/env bash
# Deploys the SAM build in .aws-sam/build to one samconfig.toml environment. Run by
# .github/workflows/deploy.yml (docs/deploying.md); by hand it needs the same variables.
#
#   scripts/deploy.sh ENV deploy           create and execute a change set, wait (dev)
#   scripts/deploy.sh ENV changeset        create a change set, do not execute it; show it
#                                          in the job summary, print its ARN (prod, before
#                                          the approval)
#   scripts/deploy.sh ENV execute ARN      execute that change set, exactly, and wait (prod,
#                                          after the approval); refuses one that is not
#                                          CREATE_COMPLETE and AVAILABLE or not of ENV's stack
#
# Stack name, region, tags and parameter overrides come from samconfig.toml [ENV.deploy];
# added to the overrides: DeployId (DEPLOY_ID, default the commit and run attempt, so that
# migrations run on every deploy), and MailFrom, PublicBaseUrl, AlarmTopicArn from the
# variables MAIL_FROM, PUBLIC_BASE_URL, ALARM_TOPIC_ARN when set. prod refuses to start
# without all three: a prod stack must send its reset emails, link to the real site and
# page someone.
# Also read: AWS_ARTIFACT_BUCKET (sam deploy --s3-bucket) and AWS_CFN_EXECUTION_ROLE_ARN
# (--role-arn), the bootstrap stack's outputs (deploy/bootstrap.yaml); TEMPLATE_FILE
# (default .aws-sam/build/template.yaml); WAIT_MINUTES (default samconfig's
# max_wait_duration); DRY_RUN=1 prints the AWS commands instead of running them (used by
# scripts/check-template.sh, no credentials needed).
# Writes `key=value` lines to $GITHUB_OUTPUT (stack, region, changeset-arn, api-url) and
# Markdown to $GITHUB_STEP_SUMMARY when those are set.
#
# Only the tip of main is deployed: with GH_TOKEN set (CI), a commit that main has moved
# past since its run started is skipped (exit 0, nothing changed), since the newer commit's
# own run deploys it; otherwise two pushes whose tests finish out of order could deploy
# the older one last.

# Backticks in single quotes are Markdown and JMESPath literals, not command substitutions.
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'deploy: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'deploy: %s\n' "$*" >&2; }

(($# >= 2)) || die "usage: scripts/deploy.sh ENV deploy|changeset|execute [CHANGESET_ARN]"
CONFIG_ENV="$1" ACTION="$2" CHANGESET_ARN="${3:-}"
TEMPLATE_FILE="${TEMPLATE_FILE:-.aws-sam/build/template.yaml}"
DEPLOY_ID="${DEPLOY_ID:-${GITHUB_SHA:-manual}-${GITHUB_RUN_ATTEMPT:-1}}"
GITHUB_OUTPUT="${GITHUB_OUTPUT:-/dev/null}"
GITHUB_STEP_SUMMARY="${GITHUB_STEP_SUMMARY:-/dev/null}"

# Environments whose stacks must not be created or updated without these parameters
# (variable name = template parameter).
declare -A REQUIRED=([prod]="MAIL_FROM=MailFrom PUBLIC_BASE_URL=PublicBaseUrl ALARM_TOPIC_ARN=AlarmTopicArn")
OPTIONAL="MAIL_FROM=MailFrom PUBLIC_BASE_URL=PublicBaseUrl ALARM_TOPIC_ARN=AlarmTopicArn"

run() {
    if [[ "${DRY_RUN:-}" == 1 ]]; then
        printf 'DRY_RUN:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# samconfig.toml [ENV.deploy.parameters]: stack, region, wait, overrides (one per line).
read_config() {
    python3 - "$CONFIG_ENV" <<'PY'
import sys, tomllib
with open("samconfig.toml", "rb") as f:
    config = tomllib.load(f)
env = sys.argv[1]
if env not in config or "deploy" not in config[env]:
    sys.exit(f"deploy: error: samconfig.toml has no [{env}.deploy.parameters]")
deploy = config[env]["deploy"]["parameters"]
overrides = deploy.get("parameter_overrides", [])
if isinstance(overrides, str):
    overrides = overrides.split()
print(deploy["stack_name"])
print(deploy["region"])
print(deploy.get("max_wait_duration", 60))
for o in overrides:
    print(o)
PY
}
mapfile -t CONFIG < <(read_config)
((${#CONFIG[@]} >= 3)) || die "could not read samconfig.toml [$CONFIG_ENV.deploy.parameters]"
STACK="${CONFIG[0]}" REGION="${CONFIG[1]}" WAIT_MINUTES="${WAIT_MINUTES:-${CONFIG[2]}}"
OVERRIDES=("${CONFIG[@]:3}" "DeployId=$DEPLOY_ID")
export AWS_DEFAULT_REGION="$REGION" AWS_REGION="$REGION"
printf 'stack=%s\nregion=%s\n' "$STACK" "$REGION" >>"$GITHUB_OUTPUT"

# The parameters from variables, and prod's refusal without them.
add_variable_parameters() {
    local missing=() pair var param
    for pair in ${REQUIRED[$CONFIG_ENV]:-}; do
        var="${pair%%=*}"
        [[ -n "${!var:-}" ]] || missing+=("$var (template parameter ${pair#*=})")
    done
    if ((${#missing[@]})); then
        printf 'deploy: error: %s needs these variables, set on its GitHub environment (docs/deploying.md):\n' \
            "$CONFIG_ENV" >&2
        printf '  %s\n' "${missing[@]}" >&2
        exit 1
    fi
    for pair in $OPTIONAL; do
        var="${pair%%=*}" param="${pair#*=}"
        [[ -n "${!var:-}" ]] || continue
        [[ "${!var}" != *[[:space:]]* ]] || die "$var contains whitespace"
        OVERRIDES+=("$param=${!var}")
    done
}

sam_deploy() {
    [[ -n "${AWS_ARTIFACT_BUCKET:-}" ]] || die "AWS_ARTIFACT_BUCKET is not set (the bootstrap stack's ArtifactBucketName)"
    [[ -n "${AWS_CFN_EXECUTION_ROLE_ARN:-}" ]] || die "AWS_CFN_EXECUTION_ROLE_ARN is not set (the bootstrap stack's ExecutionRoleArn)"
    [[ -f "$TEMPLATE_FILE" || "${DRY_RUN:-}" == 1 ]] || die "$TEMPLATE_FILE not found: unpack the sam build first"
    # --parameter-overrides on the command line replaces samconfig's list, hence the whole
    # list again. confirm_changeset (prod's by-hand default) is off: the approval of the
    # GitHub environment is the confirmation, of the change set it was shown.
    run sam deploy --config-env "$CONFIG_ENV" \
        --template-file "$TEMPLATE_FILE" \
        --s3-bucket "$AWS_ARTIFACT_BUCKET" \
        --role-arn "$AWS_CFN_EXECUTION_ROLE_ARN" \
        --no-confirm-changeset --no-fail-on-empty-changeset --no-progressbar \
        --max-wait-duration "$WAIT_MINUTES" \
        "$@" \
        --parameter-overrides "${OVERRIDES[@]}"
}

api_url() {
    run aws cloudformation describe-stacks --stack-name "$STACK" \
        --query "Stacks[0].Outputs[?OutputKey=='ApiUrl'].OutputValue" --output text
}

# The change set, as the approver reads it: its changes, then its parameters.
summarize_changeset() {
    local arn="$1" changes params
    changes="$(aws cloudformation describe-change-set --change-set-name "$arn" --output table \
        --query 'Changes[].ResourceChange.{Action:Action,Resource:LogicalResourceId,Type:ResourceType,Replacement:Replacement}')"
    params="$(aws cloudformation describe-change-set --change-set-name "$arn" --output table \
        --query 'Parameters[].{Parameter:ParameterKey,Value:ParameterValue}')"
    printf '%s\n%s\n' "$changes" "$params"
    {
        printf '## Change set for `%s` (%s)\n\n' "$STACK" "$REGION"
        printf 'The `prod` job executes exactly this change set, by ARN, once approved:\n\n`%s`\n\n' "$arn"
        printf '### Changes\n\n```text\n%s\n```\n\n### Parameters\n\n```text\n%s\n```\n' "$changes" "$params"
    } >>"$GITHUB_STEP_SUMMARY"
}

create_changeset() {
    local out line arn=""
    if [[ "${DRY_RUN:-}" == 1 ]]; then
        sam_deploy --no-execute-changeset --output json
        return 0
    fi
    out="$(mktemp)"
    sam_deploy --no-execute-changeset --output json | tee "$out"
    # SAM's JSON mode ends with one result line: changeset_created (with its ARN) or
    # no_changes.
    while IFS= read -r line; do
        arn="$(python3 -c 'import json, sys
r = json.loads(sys.argv[1])
if r.get("type") == "result" and r.get("status") == "changeset_created":
    print(r["changeset_id"])' "$line" 2>/dev/null || true)"
        [[ -z "$arn" ]] || break
    done <"$out"
    rm -f "$out"
    if [[ -z "$arn" ]]; then
        log "no changes: nothing to execute"
        printf '## No changes to `%s`\n' "$STACK" >>"$GITHUB_STEP_SUMMARY"
        printf 'changeset-arn=\n' >>"$GITHUB_OUTPUT"
        return 0
    fi
    printf 'changeset-arn=%s\n' "$arn" >>"$GITHUB_OUTPUT"
    summarize_changeset "$arn"
}

# Polls the stack until its operation ends (the AWS CLI's waiters give up after an hour).
wait_for_stack() {
    local deadline=$((SECONDS + WAIT_MINUTES * 60)) status last=""
    while :; do
        status="$(aws cloudformation describe-stacks --stack-name "$STACK" \
            --query 'Stacks[0].StackStatus' --output text)"
        [[ "$status" == "$last" ]] || log "$STACK: $status"
        last="$status"
        case "$status" in
            CREATE_COMPLETE | UPDATE_COMPLETE) return 0 ;;
            *_IN_PROGRESS) ;;
            *)
                aws cloudformation describe-stack-events --stack-name "$STACK" --max-items 30 \
                    --query 'StackEvents[?ends_with(ResourceStatus, `FAILED`)].[Timestamp,LogicalResourceId,ResourceStatusReason]' \
                    --output table >&2 || true
                die "$STACK ended in $status"
                ;;
        esac
        ((SECONDS < deadline)) || die "$STACK still $status after $WAIT_MINUTES min (it goes on in CloudFormation)"
        sleep 30
    done
}

execute_changeset() {
    [[ -n "$CHANGESET_ARN" ]] || die "execute needs the change set's ARN"
    [[ "$CHANGESET_ARN" == arn:*:cloudformation:"$REGION":*:changeSet/* ]] ||
        die "not a change set ARN of $REGION: $CHANGESET_ARN"
    local described stack status exec_status
    if [[ "${DRY_RUN:-}" == 1 ]]; then
        run aws cloudformation execute-change-set --change-set-name "$CHANGESET_ARN"
        return 0
    fi
    described="$(aws cloudformation describe-change-set --change-set-name "$CHANGESET_ARN" \
        --query '[StackName,Status,ExecutionStatus]' --output text)"
    read -r stack status exec_status <<<"$described"
    [[ "$stack" == "$STACK" ]] || die "the change set is of stack $stack, not $STACK"
    if [[ "$status" != CREATE_COMPLETE || "$exec_status" != AVAILABLE ]]; then
        die "refusing: the change set is $status/$exec_status, not CREATE_COMPLETE/AVAILABLE (the stack changed since it was made, or it ran already); re-run the workflow for a new one"
    fi
    log "executing the approved change set $CHANGESET_ARN"
    aws cloudformation execute-change-set --change-set-name "$CHANGESET_ARN"
    wait_for_stack
    printf 'api-url=%s\n' "$(api_url)" >>"$GITHUB_OUTPUT"
}

# True unless main has moved past GITHUB_SHA (checked only in CI, where GH_TOKEN is set).
still_tip_of_main() {
    [[ -n "${GH_TOKEN:-}" && -n "${GITHUB_SHA:-}" && "${DRY_RUN:-}" != 1 ]] || return 0
    local tip
    tip="$(gh api "repos/${GITHUB_REPOSITORY}/commits/main" --jq .sha)" ||
        die "could not read the tip of main"
    [[ "$tip" == "$GITHUB_SHA" ]] && return 0
    log "main is at $tip now, past $GITHUB_SHA: not deploying this one (the newer run does)"
    printf 'Skipped: `main` has moved on to %s; its own run deploys it.\n' "$tip" >>"$GITHUB_STEP_SUMMARY"
    printf 'changeset-arn=\n' >>"$GITHUB_OUTPUT"
    return 1
}
still_tip_of_main || exit 0

case "$ACTION" in
    deploy)
        add_variable_parameters
        sam_deploy
        [[ "${DRY_RUN:-}" == 1 ]] || printf 'api-url=%s\n' "$(api_url)" >>"$GITHUB_OUTPUT"
        ;;
    changeset)
        add_variable_parameters
        create_changeset
        ;;
    execute) execute_changeset ;;
    *) die "unknown action $ACTION (deploy, changeset or execute)" ;;
esac
