#!/usr/bin/env bash
# Group mode, optional and separate (docs/deploy.md "Group mode (optional)", docs/grant-modes.md §3 and §5): grants
# the handler's identity the Microsoft Graph application permissions of group mode:
#   Group.Create          create its own security groups (it is their owner, which lets it change their members)
#   GroupMember.Read.All  find its groups again (read-only)
#   Application.Read.All  read a kubelet principal's groups (transitiveMemberOf) for verification
# An application permission to Microsoft Graph is an admin consent: run this as a directory administrator
# (Privileged Role Administrator or Global Administrator; an Application or Cloud Application Administrator cannot
# consent Microsoft Graph app roles), signed in with `az login`. Not part of main.bicep, whose deployer is usually a
# subscription Owner without that Entra role.
#
#   infra/grant-graph-permissions.sh <identityPrincipalId output of main.bicep> [--revoke]
#
# Idempotent: a permission already granted is left alone. --revoke removes exactly these three grants.
set -euo pipefail

principal="${1:?usage: $0 <principal object id> [--revoke]}"
action="${2:-grant}"
if ! [[ "$principal" =~ ^[0-9a-fA-F-]{36}$ ]]; then
  echo "not an object id: $principal" >&2
  exit 2
fi
graph_app_id="00000003-0000-0000-c000-000000000000" # Microsoft Graph, the same in every tenant
api="https://graph.microsoft.com/v1.0"
roles=(Group.Create GroupMember.Read.All Application.Read.All)

graph_sp="$(az ad sp show --id "$graph_app_id" --query id -o tsv)"
for role in "${roles[@]}"; do
  role_id="$(az ad sp show --id "$graph_app_id" --query "appRoles[?value=='$role'] | [0].id" -o tsv)"
  if [ -z "$role_id" ]; then
    echo "Microsoft Graph has no app role $role" >&2
    exit 1
  fi
  existing="$(az rest --method GET --uri "$api/servicePrincipals/$principal/appRoleAssignments" \
    --query "value[?appRoleId=='$role_id' && resourceId=='$graph_sp'] | [0].id" -o tsv)"
  if [ "$action" = "--revoke" ]; then
    if [ -n "$existing" ]; then
      az rest --method DELETE --uri "$api/servicePrincipals/$principal/appRoleAssignments/$existing"
      echo "revoked $role"
    else
      echo "not granted: $role"
    fi
  elif [ -n "$existing" ]; then
    echo "already granted: $role"
  else
    az rest --method POST --uri "$api/servicePrincipals/$principal/appRoleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\": \"$principal\", \"resourceId\": \"$graph_sp\", \"appRoleId\": \"$role_id\"}" \
      --output none
    echo "granted $role"
  fi
done
