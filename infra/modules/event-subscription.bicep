// The event subscription on a watched subscription's Microsoft.Resources.Subscriptions system topic: the
// operations the handler's event classifier acts on (src/**/events.rs), delivered to the OnResourceEvent
// function, retried as Event Grid does by default, and dead-lettered to the app's storage with the topic's
// identity. Deployed as the last stage, after the package: an AzureFunction destination is validated against the
// function, which exists only once the package is deployed.
targetScope = 'resourceGroup'

@description('Name of the (existing) Microsoft.Resources.Subscriptions system topic in this resource group.')
param systemTopicName string

@description('Event subscription name (unique within the topic).')
@minLength(3)
@maxLength(60)
param name string

@description('Resource id of the Function App.')
param functionAppId string

@description('The Event Grid-triggered function (folder name in the package).')
param functionName string = 'OnResourceEvent'

@description('Resource id of the storage account that receives dead-lettered events.')
param deadLetterStorageAccountId string

param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Values Event Grid accepts in one StringIn advanced filter. UNCONFIRMED: 25 today, 5 in older documents; with 5 the operations are split over two event subscriptions.')
@minValue(1)
@maxValue(25)
param maxValuesPerFilter int = 25

@description('Event Grid delivery attempts before dead-lettering (Event Grid default).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Event time-to-live in minutes before dead-lettering (Event Grid default: 24 h).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// Exactly the operations the classifier turns into work (everything else it ignores). Tags API deletes count:
// removing all tags of a registry or cluster changes what it selects. tests/infra_consistency.rs checks this list
// against the classifier.
var handledOperations = [
  'Microsoft.ContainerService/managedClusters/write'
  'Microsoft.ContainerService/managedClusters/delete'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.ContainerRegistry/registries/delete'
  'Microsoft.Resources/tags/write'
  'Microsoft.Resources/tags/delete'
]

var chunkCount = (length(handledOperations) + maxValuesPerFilter - 1) / maxValuesPerFilter

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for i in range(0, chunkCount): {
  parent: topic
  name: chunkCount == 1 ? name : '${name}-${i}'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: take(skip(handledOperations, i * maxValuesPerFilter), maxValuesPerFilter)
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}]

output eventSubscriptionNames array = [for i in range(0, chunkCount): eventSubscriptions[i].name]
output operations array = handledOperations
