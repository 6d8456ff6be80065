// Alerting on the handler's telemetry (docs/telemetry.md): an action group (email, optional webhook) and four
// scheduled query rules over the Application Insights resource. What each alert means and what to do:
// docs/deploy.md, "Alerts". tests/infra_consistency.rs checks that every name a query uses is one the code emits.
targetScope = 'resourceGroup'

@description('Prefix of the alert resources (the Function App name).')
param name string

param location string = resourceGroup().location
param tags object = {}

@description('Application Insights resource the rules query.')
param appInsightsId string

@description('Email addresses notified by the action group (may be empty when a webhook is given).')
param alertEmails array = []

@description('Optional webhook the action group calls with the common alert schema (e.g. a Teams or PagerDuty endpoint).')
@secure()
param alertWebhookUrl string = ''

@description('Longest gap, in minutes, between two runs of AUTOATTACH_VERIFY_SCHEDULE. The "no completed verification run" alert fires after twice this.')
@minValue(1)
@maxValue(1440)
param verifyMaxGapMinutes int = 30

@description('Role assignments Azure allows per subscription (fixed by Azure).')
param roleAssignmentLimit int = 4000

@description('Alert when a subscription uses more than this percentage of roleAssignmentLimit.')
@minValue(1)
@maxValue(100)
param roleAssignmentCapacityPercent int = 90

var missingRunMinutes = 2 * verifyMaxGapMinutes
// Log alert windows take a fixed set of durations; the query itself looks back exactly missingRunMinutes.
var missingRunWindow = missingRunMinutes <= 60 ? 'PT1H' : (missingRunMinutes <= 120 ? 'PT2H' : (missingRunMinutes <= 360 ? 'PT6H' : (missingRunMinutes <= 1440 ? 'P1D' : 'P2D')))
var missingRunFrequency = missingRunMinutes < 30 ? 'PT5M' : 'PT15M'
var capacityThreshold = roleAssignmentLimit * roleAssignmentCapacityPercent / 100

var emailReceivers = [for (email, i) in alertEmails: {
  name: 'email-${i}'
  emailAddress: email
  useCommonAlertSchema: true
}]

var webhookReceivers = empty(alertWebhookUrl) ? [] : [
  {
    name: 'webhook'
    serviceUri: alertWebhookUrl
    useCommonAlertSchema: true
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2019-06-01' = {
  name: 'ag-${name}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'acrattach'
    enabled: true
    emailReceivers: emailReceivers
    webhookReceivers: webhookReceivers
  }
}

// The queries. Classic Application Insights tables (the rules are scoped to the component): the handler's
// AttachmentVerification / RegistryVerification log records are `traces` with their attributes in
// customDimensions; its metrics are `customMetrics`.

// Latest result of every pair in the window; alert on those still failed or missing.
var pairsQuery = '''
traces
| where message == "AttachmentVerification"
| extend status = tostring(customDimensions["status"]),
         cluster = tolower(tostring(customDimensions["cluster.id"])),
         registry = tolower(tostring(customDimensions["registry.id"])),
         reason = tostring(customDimensions["reason"])
| summarize arg_max(timestamp, status, reason) by cluster, registry
| where status in ("failed", "missing")
| project timestamp, cluster, registry, status, reason
'''

var invalidSelectorQuery = '''
traces
| where message == "RegistryVerification"
| extend status = tostring(customDimensions["status"]),
         registry = tolower(tostring(customDimensions["registry.id"])),
         reason = tostring(customDimensions["reason"])
| where status == "invalid_selector"
| summarize arg_max(timestamp, reason) by registry
'''

// Role assignments counted against Azure's per-subscription limit, as the verification run last reported them.
var capacityQuery = '''
customMetrics
| where name == "autoattach.role_assignments.used"
| extend subscription = tostring(customDimensions["subscription"])
| summarize used = max(value) by subscription
| where used > THRESHOLD
'''

var missingRunQuery = '''
customMetrics
| where timestamp > ago(WINDOWm)
| where name == "autoattach.verification.runs"
| where tostring(customDimensions["outcome"]) in ("healthy", "unhealthy")
| summarize completedRuns = sum(valueSum)
| project completedRuns = iff(isnull(completedRuns), 0.0, todouble(completedRuns))
'''

var rules = [
  {
    id: 'pairs'
    displayName: '${name}: cluster/registry pairs failed or missing'
    description: 'A (cluster, registry) pair\'s latest verification result is failed or missing: the cluster cannot pull from a registry that selects it. docs/deploy.md#alerts'
    severity: 2
    query: pairsQuery
    frequency: 'PT15M'
    window: 'PT1H'
    measure: null
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    id: 'invalid-selectors'
    displayName: '${name}: registry opt-in tag does not parse'
    description: 'A registry\'s opt-in tag value is not a valid selector; it selects no cluster until fixed. docs/deploy.md#alerts'
    severity: 3
    query: invalidSelectorQuery
    frequency: 'PT15M'
    window: 'PT1H'
    measure: null
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    id: 'role-assignment-capacity'
    displayName: '${name}: subscription above ${roleAssignmentCapacityPercent}% of the role-assignment limit'
    description: 'A subscription holds more than ${capacityThreshold} of Azure\'s ${roleAssignmentLimit} role assignments; new grants will fail with RoleAssignmentLimitExceeded. docs/deploy.md#alerts'
    severity: 2
    query: replace(capacityQuery, 'THRESHOLD', string(capacityThreshold))
    frequency: 'PT1H'
    window: 'PT2H'
    measure: null
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    id: 'verification-not-completed'
    displayName: '${name}: no completed verification run in ${missingRunMinutes} minutes'
    description: 'The VerifyAttachments timer has not completed a run within twice its schedule: drift is not being repaired. docs/deploy.md#alerts'
    severity: 1
    query: replace(missingRunQuery, 'WINDOW', string(missingRunMinutes))
    frequency: missingRunFrequency
    window: missingRunWindow
    measure: 'completedRuns'
    operator: 'LessThan'
    threshold: 1
  }
]

resource queryRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: 'sqr-${name}-${rule.id}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    criteria: {
      allOf: [
        union({
          query: rule.query
          timeAggregation: rule.measure == null ? 'Count' : 'Total'
          operator: rule.operator
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }, rule.measure == null ? {} : {
          metricMeasureColumn: rule.measure
        })
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output actionGroupId string = actionGroup.id
output alertRuleNames array = [for (rule, i) in rules: queryRules[i].name]
