// Optional alert route: an Event Hub that Entra ID diagnostic settings stream the
// UserRiskEvents and RiskyUsers categories to (the setting itself is tenant scope: see
// ../entra-diagnostics.bicep). The function reads with its managed identity
// (Azure Event Hubs Data Receiver); no connection string is given to the app.

param location string
param tags object
param namespaceName string
@description('Principal (object) id of the app\'s managed identity.')
param identityPrincipalId string
param eventHubName string = 'entra-risk-events'
param consumerGroupName string = 'responder'

@description('Keep SAS (local) auth on the namespace: Entra diagnostic settings send through a namespace authorization rule. The app itself never uses a key.')
param allowLocalAuthForDiagnostics bool = true

var eventHubsDataReceiver = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: !allowLocalAuthForDiagnostics
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: 2
    messageRetentionInDays: 1
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
}

// The rule the Entra diagnostic setting references; Azure Monitor streaming requires
// Manage, Send and Listen on a namespace-level rule. Only the diagnostic setting uses it.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'entra-diagnostics'
  properties: {
    rights: [
      'Manage'
      'Listen'
      'Send'
    ]
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, identityPrincipalId, eventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiver)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output eventHubName string = hub.name
output consumerGroupName string = consumerGroup.name
output diagnosticsAuthorizationRuleId string = diagnosticsRule.id
