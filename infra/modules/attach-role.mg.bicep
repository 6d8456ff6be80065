// The same custom role and conditioned assignment as watch-subscription.bicep, once at a management group:
// it covers every subscription below it (including ones added later) and, unlike subscription-level assignments,
// does not count against any subscription's 4,000 role assignments.
targetScope = 'managementGroup'

@description('The Function App name (names the role).')
param appName string

@description('Principal id of the app\'s user-assigned identity.')
param principalId string

@description('Group mode (docs/grant-modes.md): the attach role may also assign the two pull roles to groups. Off by default; the Graph permissions are a separate step for a directory administrator (infra/graph-permissions.bicep, docs/deploy.md "Group mode (optional)").')
param enableGroupMode bool = false

var attachRole = loadJsonContent('attach-role.json')

resource roleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(managementGroup().id, appName, 'acr-autoattach-attach')
  properties: {
    roleName: 'acr-autoattach attach (${appName}, ${managementGroup().name})'
    description: attachRole.description
    type: 'CustomRole'
    permissions: [
      {
        actions: attachRole.actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      managementGroup().id
    ]
  }
}

resource roleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, 'acr-autoattach-attach')
  properties: {
    roleDefinitionId: roleDefinition.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-autoattach (${appName}): may assign only AcrPull or Container Registry Repository Reader, only to service principals${enableGroupMode ? ' or groups' : ''}'
    condition: enableGroupMode ? loadTextContent('attach-condition-groups.txt') : loadTextContent('attach-condition.txt')
    conditionVersion: '2.0'
  }
}

output roleDefinitionId string = roleDefinition.id
