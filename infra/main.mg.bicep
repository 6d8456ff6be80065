// acr-autoattach across MANY subscriptions, deployed at a management group: the app (in appSubscriptionId) and its
// alerting, then each subscription of watchedSubscriptions (system topic, dead-letter access, event subscription,
// and, with grantAt = 'subscription', the custom role and its conditioned assignment).
//
// Staged (docs/deploy.md):
//   1. az deployment mg create -m <mg> -l <region> -f infra/main.mg.bicep -p @my.parameters.json
//   2. function-app/package.sh && az functionapp deploy ... (as for main.bicep)
//   3. the command of step 1 again with -p withEventSubscriptions=true
// Adding a subscription later: append it to watchedSubscriptions and run step 3's command.
targetScope = 'managementGroup'

@description('Function App name (globally unique). Names every other resource.')
@minLength(2)
@maxLength(40)
param name string

@description('Subscription that hosts the app.')
param appSubscriptionId string

@description('Region of the app and of the resource groups created for system topics.')
param location string = deployment().location

param appResourceGroupName string = 'rg-${name}'
param tags object = {}

// Each element: { subscriptionId: '<guid>' } or, to use the subscription's existing
// Microsoft.Resources.Subscriptions system topic (only one may exist per subscription; it must have a
// system-assigned identity), { subscriptionId: '<guid>', existingSystemTopic: { resourceGroup: '<rg>', name: '<topic>' } }.
// (A plain array rather than a user-defined type: checkov's Bicep parser, pycep 0.5, does not read `type[]`.)
@description('Subscriptions to watch (the registries and the clusters must be in them): [{ subscriptionId, existingSystemTopic?: { resourceGroup, name } }].')
@minLength(1)
param watchedSubscriptions array

@description('Where the app identity gets its conditioned custom role: at each watched subscription (least scope), or once at this management group (covers every subscription below it and does not count against the per-subscription 4,000 role-assignment limit).')
@allowed(['subscription', 'managementGroup'])
param grantAt string = 'subscription'

// ---- the handler ----
param tag string = 'acr-autoattach'
@allowed(['enforce', 'audit'])
param mode string = 'enforce'
param detach bool = false
param verifySchedule string = '0 */30 * * * *'
param verifyMaxGapMinutes int = 30
param handlerSettings object = {}
param extraAppSettings object = {}
@secure()
param handlerAlertWebhookUrl string = ''

// ---- hosting (UNCONFIRMED values are parameters: docs/deploy.md) ----
param runtimeName string = 'custom'
param runtimeVersion string = '1.0'
param maximumInstanceCount int = 40
param instanceMemoryMB int = 512
param appInsightsDisableLocalAuth bool = true

// ---- alerting ----
param alertEmails array = []
@secure()
param actionGroupWebhookUrl string = ''
param roleAssignmentCapacityPercent int = 90

// ---- events ----
param withEventSubscriptions bool = false
param maxValuesPerFilter int = 25

// ---- group mode (issue 16) ----
@description('Group mode (docs/grant-modes.md): AUTOATTACH_GRANT_MODE=group, and the attach role may also assign the two pull roles to groups. Off by default; the Graph permissions are a separate step for a directory administrator (infra/graph-permissions.bicep, docs/deploy.md "Group mode (optional)").')
param enableGroupMode bool = false

var watchedIds = [for s in watchedSubscriptions: s.subscriptionId]

module appStack 'modules/app-stack.bicep' = {
  name: 'acr-autoattach-app-${uniqueString(name)}'
  scope: subscription(appSubscriptionId)
  params: {
    name: name
    location: location
    appResourceGroupName: appResourceGroupName
    tags: tags
    runtimeName: runtimeName
    runtimeVersion: runtimeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appInsightsDisableLocalAuth: appInsightsDisableLocalAuth
    handlerSettings: union({
      AUTOATTACH_TAG: tag
      AUTOATTACH_MODE: mode
      AUTOATTACH_DETACH: detach ? 'true' : 'false'
      AUTOATTACH_VERIFY_SCHEDULE: verifySchedule
      AUTOATTACH_SUBSCRIPTIONS: join(watchedIds, ',')
      AUTOATTACH_GRANT_MODE: enableGroupMode ? 'group' : 'direct'
    }, handlerSettings)
    extraAppSettings: extraAppSettings
    handlerAlertWebhookUrl: handlerAlertWebhookUrl
    alertEmails: alertEmails
    actionGroupWebhookUrl: actionGroupWebhookUrl
    verifyMaxGapMinutes: verifyMaxGapMinutes
    roleAssignmentCapacityPercent: roleAssignmentCapacityPercent
  }
}

module attachAtManagementGroup 'modules/attach-role.mg.bicep' = if (grantAt == 'managementGroup') {
  name: 'acr-autoattach-role-${uniqueString(name)}'
  params: {
    appName: name
    principalId: appStack.outputs.identityPrincipalId
    enableGroupMode: enableGroupMode
  }
}

module watch 'modules/watch-subscription.bicep' = [for s in watchedSubscriptions: {
  name: 'acr-autoattach-watch-${uniqueString(name, s.subscriptionId)}'
  scope: subscription(s.subscriptionId)
  params: {
    appName: name
    location: location
    tags: tags
    principalId: appStack.outputs.identityPrincipalId
    enableGroupMode: enableGroupMode
    grantRole: grantAt == 'subscription'
    existingSystemTopic: s.?existingSystemTopic ?? {}
    withEventSubscriptions: withEventSubscriptions
    functionAppId: appStack.outputs.functionAppId
    appSubscriptionId: appSubscriptionId
    appResourceGroupName: appStack.outputs.appResourceGroupName
    storageAccountName: appStack.outputs.storageAccountName
    storageAccountId: appStack.outputs.storageAccountId
    deadLetterContainerName: appStack.outputs.deadLetterContainerName
    maxValuesPerFilter: maxValuesPerFilter
  }
}]

output functionAppName string = appStack.outputs.functionAppName
output appResourceGroupName string = appStack.outputs.appResourceGroupName
output functionAppId string = appStack.outputs.functionAppId
output identityPrincipalId string = appStack.outputs.identityPrincipalId
output identityClientId string = appStack.outputs.identityClientId
output packageContainerUrl string = appStack.outputs.packageContainerUrl
output appInsightsName string = appStack.outputs.appInsightsName
output logAnalyticsWorkspaceId string = appStack.outputs.logAnalyticsWorkspaceId
output logAnalyticsCustomerId string = appStack.outputs.logAnalyticsCustomerId
output actionGroupId string = appStack.outputs.actionGroupId
output alertRuleNames array = appStack.outputs.alertRuleNames
output managementGroupRoleDefinitionId string = grantAt == 'managementGroup' ? attachAtManagementGroup.outputs.roleDefinitionId : ''
output watchedSubscriptions array = [for (s, i) in watchedSubscriptions: {
  subscriptionId: watch[i].outputs.subscriptionId
  roleDefinitionId: watch[i].outputs.roleDefinitionId
  systemTopicResourceGroup: watch[i].outputs.systemTopicResourceGroup
  systemTopicName: watch[i].outputs.systemTopicName
}]
output eventSubscriptionsDeployed bool = withEventSubscriptions
