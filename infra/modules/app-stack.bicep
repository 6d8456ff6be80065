// The app's resource group with the app (app.bicep) and its alerting (alerts.bicep). Shared by both entry files.
targetScope = 'subscription'

param name string
param location string
param appResourceGroupName string
param tags object = {}

param runtimeName string = 'custom'
param runtimeVersion string = '1.0'
param maximumInstanceCount int = 40
param instanceMemoryMB int = 512
param appInsightsDisableLocalAuth bool = true

@description('Handler settings (AUTOATTACH_*, OTEL_*, RUST_LOG); see app.bicep for the defaults.')
param handlerSettings object = {}
param extraAppSettings object = {}

@secure()
param handlerAlertWebhookUrl string = ''

param alertEmails array = []

@secure()
param actionGroupWebhookUrl string = ''

param verifyMaxGapMinutes int = 30
param roleAssignmentCapacityPercent int = 90

resource appResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: appResourceGroupName
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'app-${uniqueString(name)}'
  scope: appResourceGroup
  params: {
    name: name
    location: location
    tags: tags
    runtimeName: runtimeName
    runtimeVersion: runtimeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appInsightsDisableLocalAuth: appInsightsDisableLocalAuth
    handlerSettings: handlerSettings
    extraAppSettings: extraAppSettings
    alertWebhookUrl: handlerAlertWebhookUrl
  }
}

module alerts 'alerts.bicep' = {
  name: 'alerts-${uniqueString(name)}'
  scope: appResourceGroup
  params: {
    name: name
    location: location
    tags: tags
    appInsightsId: app.outputs.appInsightsId
    alertEmails: alertEmails
    alertWebhookUrl: actionGroupWebhookUrl
    verifyMaxGapMinutes: verifyMaxGapMinutes
    roleAssignmentCapacityPercent: roleAssignmentCapacityPercent
  }
}

output appResourceGroupName string = appResourceGroup.name
output functionAppName string = app.outputs.functionAppName
output functionAppId string = app.outputs.functionAppId
output functionAppHostName string = app.outputs.functionAppHostName
output identityId string = app.outputs.identityId
output identityPrincipalId string = app.outputs.identityPrincipalId
output identityClientId string = app.outputs.identityClientId
output storageAccountName string = app.outputs.storageAccountName
output storageAccountId string = app.outputs.storageAccountId
output packageContainerUrl string = app.outputs.packageContainerUrl
output deadLetterContainerName string = app.outputs.deadLetterContainerName
output appInsightsName string = app.outputs.appInsightsName
output logAnalyticsWorkspaceId string = app.outputs.logAnalyticsWorkspaceId
output logAnalyticsCustomerId string = app.outputs.logAnalyticsCustomerId
output actionGroupId string = alerts.outputs.actionGroupId
output alertRuleNames array = alerts.outputs.alertRuleNames
