// acr-autoattach in ONE subscription: the app, its alerting, and the watch on this same subscription.
//
// Staged (docs/deploy.md):
//   1. az deployment sub create -l <region> -f infra/main.bicep -p name=<app> alertEmails='["ops@example.com"]'
//   2. function-app/package.sh && az functionapp deploy -g rg-<app> -n <app> --src-path dist/acr-autoattach-functionapp.zip --type zip
//   3. the command of step 1 again with -p withEventSubscriptions=true
// For several subscriptions (or a management group) use main.mg.bicep.
targetScope = 'subscription'

@description('Function App name (globally unique). Names every other resource.')
@minLength(2)
@maxLength(40)
param name string

@description('Region of the app and its resource groups.')
param location string = deployment().location

param appResourceGroupName string = 'rg-${name}'
param tags object = {}

// ---- the handler (app settings; defaults are the handler's, see app.bicep and README "Configuration") ----
@description('AUTOATTACH_TAG: the opt-in tag on registries and opt-out tag on clusters.')
param tag string = 'acr-autoattach'

@description('AUTOATTACH_MODE: enforce creates missing assignments; audit only reports.')
@allowed(['enforce', 'audit'])
param mode string = 'enforce'

@description('AUTOATTACH_DETACH: remove assignments this tool made that are no longer wanted.')
param detach bool = false

@description('AUTOATTACH_VERIFY_SCHEDULE: six-field NCRONTAB of the verification timer (UTC).')
param verifySchedule string = '0 */30 * * * *'

@description('Longest gap in minutes between two runs of verifySchedule (the missing-run alert fires after twice this).')
param verifyMaxGapMinutes int = 30

@description('Other handler settings by name (e.g. {"AUTOATTACH_MAX_CONCURRENCY": "8"}).')
param handlerSettings object = {}

@description('Extra app settings merged last (e.g. OTEL_EXPORTER_OTLP_ENDPOINT).')
param extraAppSettings object = {}

@description('AUTOATTACH_ALERT_WEBHOOK: the handler\'s own Alertmanager/JSON webhook (optional).')
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
@description('Existing Microsoft.Resources.Subscriptions system topic of this subscription, { resourceGroup, name } (only one may exist); empty creates one.')
param existingSystemTopic object = {}

@description('Stage 3: create the event subscription (only after the package is deployed).')
param withEventSubscriptions bool = false

@description('UNCONFIRMED Event Grid limit of values per StringIn filter (25; 5 in older documents).')
param maxValuesPerFilter int = 25

// ---- group mode (issue 16) ----
@description('Group mode (docs/grant-modes.md): AUTOATTACH_GRANT_MODE=group, and the attach role may also assign the two pull roles to groups. Off by default; the Graph permissions are a separate step for a directory administrator (infra/graph-permissions.bicep, docs/deploy.md "Group mode (optional)").')
param enableGroupMode bool = false

var watched = subscription().subscriptionId

module appStack 'modules/app-stack.bicep' = {
  name: 'acr-autoattach-app-${uniqueString(name)}'
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
      AUTOATTACH_SUBSCRIPTIONS: watched
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

module watch 'modules/watch-subscription.bicep' = {
  name: 'acr-autoattach-watch-${uniqueString(name, watched)}'
  params: {
    appName: name
    location: location
    tags: tags
    principalId: appStack.outputs.identityPrincipalId
    enableGroupMode: enableGroupMode
    grantRole: true
    existingSystemTopic: existingSystemTopic
    withEventSubscriptions: withEventSubscriptions
    functionAppId: appStack.outputs.functionAppId
    appSubscriptionId: subscription().subscriptionId
    appResourceGroupName: appStack.outputs.appResourceGroupName
    storageAccountName: appStack.outputs.storageAccountName
    storageAccountId: appStack.outputs.storageAccountId
    deadLetterContainerName: appStack.outputs.deadLetterContainerName
    maxValuesPerFilter: maxValuesPerFilter
  }
}

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
output watchedSubscriptions array = [
  {
    subscriptionId: watch.outputs.subscriptionId
    roleDefinitionId: watch.outputs.roleDefinitionId
    systemTopicResourceGroup: watch.outputs.systemTopicResourceGroup
    systemTopicName: watch.outputs.systemTopicName
  }
]
output eventSubscriptionsDeployed bool = withEventSubscriptions
