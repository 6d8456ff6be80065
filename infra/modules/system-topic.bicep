// The watched subscription's Microsoft.Resources.Subscriptions system topic: created here, or an existing one
// referenced (Azure allows only one per subscription). Either way it needs a system-assigned identity: Event Grid
// writes dead-lettered events to the app's storage with it.
targetScope = 'resourceGroup'

@description('Create the system topic (false: reference an existing one by name in this resource group).')
param create bool = true

@description('System topic name.')
param name string

param tags object = {}

resource created 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (create) {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource found 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = if (!create) {
  name: name
}

output name string = name
output id string = create ? created.id : found.id
@description('Principal id of the topic\'s system-assigned identity (an existing topic must have one: docs/deploy.md).')
output principalId string = create ? created.identity.principalId : found.identity.principalId
