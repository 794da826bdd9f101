/** The device registry: where the user's pushes go while no stream is open. */

import { call, type ApiContext } from "./http.js";

/** What the server needs to push to a device. Extra fields are sent as given. */
export interface DeviceRegistration {
  /** The FCM registration token (from the Firebase SDK's `getToken()`). */
  fcm_token: string;
  platform: "android" | "web" | "ios";
  [field: string]: unknown;
}

/** The server's answer to a registration. */
export interface DeviceRecord {
  device_id: string;
  user_id: string;
  platform: string;
  updated_at: number | string;
}

/** `PUT /v1/devices/{deviceId}`: registers the device, or replaces its token. */
export async function registerDevice(ctx: ApiContext, deviceId: string, registration: DeviceRegistration): Promise<DeviceRecord> {
  const response = await call(ctx, "PUT", `/v1/devices/${encodeURIComponent(deviceId)}`, registration);
  return (await response.json()) as DeviceRecord;
}

/** `DELETE /v1/devices/{deviceId}`: `false` when the user had no such device. */
export async function unregisterDevice(ctx: ApiContext, deviceId: string): Promise<boolean> {
  try {
    await call(ctx, "DELETE", `/v1/devices/${encodeURIComponent(deviceId)}`);
    return true;
  } catch (error) {
    if ((error as { status?: number }).status === 404) return false;
    throw error;
  }
}
