// Tenant-scope deployment (separate from main.bicep, which targets a resource group):
// an Entra ID diagnostic setting that streams the Identity Protection categories
// UserRiskEvents and RiskyUsers to the Event Hub created by main.bicep with enableEventHub.
//
//   az deployment tenant create --location <region> \
//     --template-file infra/entra-diagnostics.bicep \
//     --parameters eventHubAuthorizationRuleId=<EVENT_HUB_AUTHORIZATION_RULE_ID output> \
//                  eventHubName=<EVENT_HUB_NAME output>
//
// The deployer needs rights at tenant scope ("/"), e.g. a Global Administrator who has
// elevated access, or a Security Administrator using the portal instead
// (Entra ID > Monitoring > Diagnostic settings). Identity Protection categories need
// Entra ID P2.
targetScope = 'tenant'

@description('Resource id of the namespace authorization rule (output EVENT_HUB_AUTHORIZATION_RULE_ID of main.bicep).')
param eventHubAuthorizationRuleId string

@description('Event hub name (output EVENT_HUB_NAME of main.bicep).')
param eventHubName string

@description('Name of the diagnostic setting.')
param settingName string = 'responder-risk-events'

resource riskStream 'microsoft.aadiam/diagnosticSettings@2017-04-01' = {
  name: settingName
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'UserRiskEvents'
        enabled: true
      }
      {
        category: 'RiskyUsers'
        enabled: true
      }
    ]
  }
}
