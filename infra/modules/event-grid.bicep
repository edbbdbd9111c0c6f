// Optional alert route: a custom Event Grid topic with a subscription that delivers to the
// Event Grid-triggered function. Publishers (Logic Apps, SOAR, scripts) authenticate with
// Entra ID (EventGrid Data Sender role); topic keys are disabled.
//
// Event Grid checks that the function exists when the subscription is created: deploy the
// code first, then provision again with enableEventGrid=true.

param location string
param tags object
param topicName string
@description('Resource id of the Function App.')
param functionAppId string
@description('Name of the Event Grid-triggered function.')
param functionName string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: Publishers (Logic Apps, SOAR tools, scripts) are outside any VNet; keys are disabled, so publishing needs Entra ID and the EventGrid Data Sender role.
  // checkov:skip=CKV_AZURE_191: The topic delivers to an Azure Function endpoint and has no dead-letter destination, so it needs no identity of its own.
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource toFunction 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: 'to-${functionName}'
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
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output topicEndpoint string = topic.properties.endpoint
output topicId string = topic.id
