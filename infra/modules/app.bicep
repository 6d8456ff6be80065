// The app (one resource group): a user-assigned identity, keyless storage for the host and the package,
// Log Analytics with workspace-based Application Insights, a Flex Consumption plan and the Linux Function App that
// runs the acr-autoattach custom handler, and every app setting the handler reads.
//
// Shapes follow Azure-Samples/azure-functions-flex-consumption-samples (IaC/bicep) and, for the user-assigned
// identity, Azure-Samples/mcp-sdk-functions-hosting-python (infra/app/api.bicep). See docs/deploy.md.
targetScope = 'resourceGroup'

@description('Function App name (globally unique: it becomes <name>.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param name string

param location string = resourceGroup().location
param tags object = {}

@description('Flex Consumption runtime of the custom handler. UNCONFIRMED pair: check the region\'s Flex stacks catalog (docs/deploy.md).')
param runtimeName string = 'custom'
@description('See runtimeName. UNCONFIRMED: no Microsoft document states custom/1.0.')
param runtimeVersion string = '1.0'

@description('Flex Consumption maximum instance count (40 is the lowest the plan accepts).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption instance memory.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 512

@description('Log Analytics retention.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Application Insights local (instrumentation-key) authentication off: only Entra ID ingestion. The Functions host and the handler\'s exporter both send Entra tokens of the identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, Monitoring Metrics Publisher below; docs/deploy.md, "Telemetry and local auth").')
param appInsightsDisableLocalAuth bool = true

@description('Handler settings (AUTOATTACH_*, OTEL_*, RUST_LOG) that override the defaults below; see docs/deploy.md.')
param handlerSettings object = {}

@description('AUTOATTACH_ALERT_WEBHOOK: Alertmanager or JSON webhook URL (may carry a token). Empty turns the handler\'s own webhook alerting off.')
@secure()
param alertWebhookUrl string = ''

@description('Extra app settings merged last (e.g. OTEL_EXPORTER_OTLP_ENDPOINT for a collector).')
param extraAppSettings object = {}

@description('Blob container that holds the deployment package.')
param packageContainerName string = 'app-package'

@description('Blob container Event Grid dead-letters undeliverable events into.')
param deadLetterContainerName string = 'eventgrid-deadletter'

// Built-in roles the app's identity needs on its own resources.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var suffix = uniqueString(resourceGroup().id, name)

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // Reviewed checkov skips (docs/deploy.md, "Static checks"):
  // checkov:skip=CKV_AZURE_35: The Flex app (no VNet integration) and Event Grid's dead-letter writer reach this account over its public endpoint; access is Entra-ID only (shared keys off).
  // checkov:skip=CKV_AZURE_59: Same reason as CKV_AZURE_35: public network access is needed without VNet integration; no anonymous blob access and no shared keys.
  // checkov:skip=CKV_AZURE_206: LRS is what the Flex samples use; the package is re-uploadable and the timer state rebuilds itself, only dead letters are not reproducible.
  // checkov:skip=CKV_AZURE_43: False positive: the name is 'st' + uniqueString() (15 lowercase alphanumerics), which checkov cannot evaluate.
  name: 'st${suffix}'
  location: location
  tags: tags
  sku: {
    name: 'Standard_LRS'
  }
  kind: 'StorageV2'
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: {
        enabled: true
        days: 7
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: 7
      }
    }

    resource packageContainer 'containers' = {
      name: packageContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource deadLetterContainer 'containers' = {
      name: deadLetterContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: appInsightsDisableLocalAuth
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption scales from zero; zone redundancy is regional and needs always-ready instances. A missed event is caught by the next verification run.
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// Settings the Functions host reads: keyless AzureWebJobsStorage through the user-assigned identity, and
// Application Insights with Entra ID authentication.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  // The handler's credential: this user-assigned identity (not overridable).
  AZURE_CLIENT_ID: identity.properties.clientId
}

// Every other setting the handler reads, with the handler's own defaults (docs/telemetry.md, README "Configuration").
// tests/infra_consistency.rs checks this block against the settings the source reads.
var handlerDefaults = {
  AUTOATTACH_TAG: 'acr-autoattach'
  AUTOATTACH_MODE: 'enforce'
  AUTOATTACH_SUBSCRIPTIONS: ''
  AUTOATTACH_DETACH: 'false'
  AUTOATTACH_READY_TIMEOUT_SECS: '20'
  AUTOATTACH_VERIFY_SCHEDULE: '0 */30 * * * *'
  AUTOATTACH_VERIFY_BUDGET_SECS: '540'
  AUTOATTACH_MAX_CONCURRENCY: '16'
  AUTOATTACH_USE_RESOURCE_GRAPH: 'true'
  AUTOATTACH_ARM_ENDPOINT: 'https://management.azure.com'
  AUTOATTACH_GRAPH_ENDPOINT: 'https://graph.microsoft.com'
  AUTOATTACH_TOKEN_NO_RETRY: 'false'
  AUTOATTACH_ALERT_FORMAT: 'alertmanager'
  AUTOATTACH_ALERT_TIMEOUT_MS: '5000'
  AUTOATTACH_ALERT_TTL_SECONDS: '3600'
  AUTOATTACH_ALERT_TRANSIENT_THRESHOLD: '3'
  AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS: '3000'
  AUTOATTACH_PAIR_RECORDS: 'changes'
  AUTOATTACH_SNAPSHOT_HOURS: '24'
  AUTOATTACH_GRANT_MODE: 'direct'
  AUTOATTACH_GROUP_SETTLE_HOURS: '26'
  AUTOATTACH_ASSIGNMENT_HEADROOM: '200'
  AUTOATTACH_ASSIGNMENT_LIMIT: '4000'
  OTEL_SERVICE_NAME: 'acr-autoattach'
  OTEL_RESOURCE_ATTRIBUTES: ''
  RUST_LOG: 'info'
}

var secretSettings = {
  AUTOATTACH_ALERT_WEBHOOK: alertWebhookUrl
}

var appSettings = union(handlerDefaults, handlerSettings, extraAppSettings, secretSettings, hostSettings)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the function's public webhook endpoint (AzureFunction destination); the app has no HTTP functions of its own.
  // checkov:skip=CKV_AZURE_17: Event Grid does not present client certificates; delivery is authenticated by the function's system key.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero by design; the timer re-verifies every pair after any outage.
  // checkov:skip=CKV_AZURE_213: The custom handler serves no HTTP route a health check could probe; the Functions host restarts a handler that fails its readiness probe.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${packageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: runtimeName
        version: runtimeVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for s in items(appSettings): {
        name: s.key
        value: s.value
      }]
    }
  }
  dependsOn: [
    blobOwner
    queueContributor
    tableContributor
    metricsPublisher
  ]
}

// No publishing with basic credentials: deployments authenticate with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output functionAppName string = site.name
output functionAppId string = site.id
output functionAppHostName string = site.properties.defaultHostName
output identityId string = identity.id
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output storageAccountName string = storage.name
output storageAccountId string = storage.id
output packageContainerUrl string = '${storage.properties.primaryEndpoints.blob}${packageContainerName}'
output deadLetterContainerName string = deadLetterContainerName
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output logAnalyticsWorkspaceId string = workspace.id
output logAnalyticsCustomerId string = workspace.properties.customerId
