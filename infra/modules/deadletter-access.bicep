// Lets a watched subscription's system topic write dead-lettered events into the app's dead-letter container
// (and nowhere else in the storage account). Deployed into the app's resource group.
targetScope = 'resourceGroup'

param storageAccountName string
param deadLetterContainerName string

@description('Principal id of the system topic\'s system-assigned identity.')
param topicPrincipalId string

@description('Role the topic\'s identity gets on the container. UNCONFIRMED which role Event Grid needs at least; default Storage Blob Data Contributor.')
param roleDefinitionGuid string = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::container.id, topicPrincipalId, roleDefinitionGuid)
  scope: storage::blobService::container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
