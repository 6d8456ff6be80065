// Everything one watched subscription needs:
//   1. a custom role with exactly the read actions the handler uses plus roleAssignments/write and /delete
//      (attach-role.json), assigned to the app's identity at the subscription with the ABAC condition of
//      attach-condition.txt: it may only create or delete assignments of AcrPull or Container Registry Repository
//      Reader to service principals (and to groups with enableGroupMode, attach-condition-groups.txt) (skipped when
//      the role is granted once at a management group instead);
//   2. the subscription's Microsoft.Resources.Subscriptions system topic (created, or an existing one), and the
//      right for the topic's identity to dead-letter into the app's container;
//   3. in the last deployment stage only (withEventSubscriptions), the event subscription to OnResourceEvent.
targetScope = 'subscription'

@description('The Function App name (names the role, the topic\'s event subscription).')
param appName string

@description('Location of the resource group created for the system topic.')
param location string

param tags object = {}

@description('Principal id of the app\'s user-assigned identity.')
param principalId string

@description('Group mode (docs/grant-modes.md): the attach role may also assign the two pull roles to groups. Off by default; the Graph permissions are a separate step for a directory administrator (infra/graph-permissions.bicep, docs/deploy.md "Group mode (optional)").')
param enableGroupMode bool = false

@description('Create the custom role and its conditioned assignment at this subscription (false when main.mg.bicep grants it at the management group).')
param grantRole bool = true

@description('Existing Microsoft.Resources.Subscriptions system topic to use, { resourceGroup, name }; empty creates one.')
param existingSystemTopic object = {}

@description('Resource group (in this subscription) for a created system topic.')
param eventsResourceGroupName string = 'rg-${appName}-events'

@description('Name of a created system topic.')
param systemTopicName string = 'egst-${appName}'

@description('Deploy the event subscription (stage 3, after the package is deployed).')
param withEventSubscriptions bool = false

@description('Resource id of the Function App (event destination).')
param functionAppId string

@description('Subscription and resource group of the app (dead-letter storage).')
param appSubscriptionId string
param appResourceGroupName string
param storageAccountName string
param storageAccountId string
param deadLetterContainerName string

@description('See event-subscription.bicep (UNCONFIRMED 25 vs 5).')
param maxValuesPerFilter int = 25

var attachRole = loadJsonContent('attach-role.json')
var createTopic = empty(existingSystemTopic)
var topicResourceGroup = createTopic ? eventsResourceGroupName : existingSystemTopic.resourceGroup
var topicName = createTopic ? systemTopicName : existingSystemTopic.name

resource roleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (grantRole) {
  name: guid(subscription().id, appName, 'acr-autoattach-attach')
  properties: {
    roleName: 'acr-autoattach attach (${appName}, ${subscription().subscriptionId})'
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
      subscription().id
    ]
  }
}

resource roleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantRole) {
  name: guid(subscription().id, principalId, 'acr-autoattach-attach')
  properties: {
    roleDefinitionId: roleDefinition.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acr-autoattach (${appName}): may assign only AcrPull or Container Registry Repository Reader, only to service principals${enableGroupMode ? ' or groups' : ''}'
    condition: enableGroupMode ? loadTextContent('attach-condition-groups.txt') : loadTextContent('attach-condition.txt')
    conditionVersion: '2.0'
  }
}

resource eventsResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = if (createTopic) {
  name: eventsResourceGroupName
  location: location
  tags: tags
}

module topic 'system-topic.bicep' = {
  name: 'topic-${uniqueString(appName, subscription().id)}'
  scope: resourceGroup(topicResourceGroup)
  params: {
    create: createTopic
    name: topicName
    tags: tags
  }
  dependsOn: [
    eventsResourceGroup
  ]
}

module deadLetterAccess 'deadletter-access.bicep' = {
  name: 'deadletter-${uniqueString(appName, subscription().id)}'
  scope: resourceGroup(appSubscriptionId, appResourceGroupName)
  params: {
    storageAccountName: storageAccountName
    deadLetterContainerName: deadLetterContainerName
    topicPrincipalId: topic.outputs.principalId
  }
}

module events 'event-subscription.bicep' = if (withEventSubscriptions) {
  name: 'events-${uniqueString(appName, subscription().id)}'
  scope: resourceGroup(topicResourceGroup)
  params: {
    systemTopicName: topic.outputs.name
    name: take('${appName}-resource-events', 58)
    functionAppId: functionAppId
    deadLetterStorageAccountId: storageAccountId
    deadLetterContainerName: deadLetterContainerName
    maxValuesPerFilter: maxValuesPerFilter
  }
  dependsOn: [
    deadLetterAccess
  ]
}

output subscriptionId string = subscription().subscriptionId
output roleDefinitionId string = grantRole ? roleDefinition.id : ''
output systemTopicResourceGroup string = topicResourceGroup
output systemTopicName string = topic.outputs.name
