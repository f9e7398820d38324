/** The plugin's version: package.json owns it. */
import { version } from '../package.json';

export const TOOL_VERSION: string = version;
